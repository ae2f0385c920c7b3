package certs

import (
	"time"

	"k8s.io/client-go/transport"

	"github.com/kedge-io/kedge/pkg/pki"
)

// defaultClientRefresh is client-go's own period
// (transport.CertCallbackRefreshDuration): how often a client built from
// certificate files checks them and, when they changed, closes its
// connections to reconnect with the new certificate.
const defaultClientRefresh = 5 * time.Minute

// scaleClientRefresh sets client-go's process-wide refresh period to a
// quarter of the shortest leaf's renewal window, at most client-go's
// 5 minutes. With kedge's one-year leaves it stays 5 minutes (the old
// certificate is valid 90 more days); with the short leaves of a test
// (--cert-validity) the in-process clients reconnect with the renewed
// certificate well before the old one expires, as they do in production.
func scaleClientRefresh(certs []Cert) {
	d := defaultClientRefresh
	for _, c := range certs {
		if c.CA {
			continue
		}
		d = min(d, pki.RenewWindow(c.NotAfter.Sub(c.NotBefore))/4)
	}
	transport.CertCallbackRefreshDuration = max(d, time.Second)
}

// ClientRefresh is how often, in this process, a client-go client built
// from certificate files checks them and reconnects with new ones
// (client-go's transport.CertCallbackRefreshDuration, as scaleClientRefresh
// set it): after a CA rotation's first phase, connections opened with a
// client certificate of the old CA are gone after this long.
func ClientRefresh() time.Duration { return transport.CertCallbackRefreshDuration }
