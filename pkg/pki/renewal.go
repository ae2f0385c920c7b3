package pki

import (
	"crypto/x509"
	"fmt"
	"slices"
	"strings"
	"time"
)

// DefaultLeafValidity is how long a leaf certificate kedge issues is valid.
const DefaultLeafValidity = 365 * 24 * time.Hour

// RenewBefore is when, before it expires, a leaf of DefaultLeafValidity is
// issued again.
const RenewBefore = renewBefore

// Services are the names `kedge certificate rotate --service` takes: each
// one names the leaves of one component.
var services = []string{
	"admin", "apiserver", "auth-proxy", "controller-manager", "coredns", "etcd",
	"kube-proxy", "kubelet", "metrics-server", "scheduler", "supervisor",
}

// Services returns the service names Config.Rotate and NodeConfig.Rotate
// take, sorted.
func Services() []string { return slices.Clone(services) }

// CheckServices returns an error naming the first entry of names that is
// not a service, and the valid ones.
func CheckServices(names []string) error {
	for _, n := range names {
		if !slices.Contains(services, n) {
			return fmt.Errorf("unknown service %q: want one of %s", n, strings.Join(services, ", "))
		}
	}
	return nil
}

// RenewWindow is how long before its NotAfter a leaf valid for lifetime
// (NotAfter − NotBefore) is issued again: the share 90/365 of its lifetime,
// at most RenewBefore. For kedge's one-year leaves that is 90 days; a test
// cluster with one-minute leaves renews them about 16 s before they expire.
func RenewWindow(lifetime time.Duration) time.Duration {
	w := time.Duration(float64(lifetime) * float64(renewBefore) / float64(DefaultLeafValidity))
	return min(w, renewBefore)
}

// NeedsRenewal reports whether cert is, at now, in its renewal window.
func NeedsRenewal(cert *x509.Certificate, now time.Time) bool {
	return !now.Before(RenewAt(cert))
}

// RenewAt is when cert enters its renewal window.
func RenewAt(cert *x509.Certificate) time.Time {
	return cert.NotAfter.Add(-RenewWindow(cert.NotAfter.Sub(cert.NotBefore)))
}

// skewFor is how far before now a leaf valid for validity starts (clocks of
// other nodes may be behind): an hour, or a tenth of a shorter validity.
func skewFor(validity time.Duration) time.Duration {
	return min(clockSkew, validity/10)
}

// newIssuing returns the issuing settings of one Generate or IssueNode.
func newIssuing(now func() time.Time, validity time.Duration, rotate []string, onIssue func(path, reason string)) (issuing, error) {
	is := issuing{now: time.Now(), validity: validity, onIssue: onIssue, rotate: map[string]bool{}}
	if now != nil {
		is.now = now()
	}
	if is.validity == 0 {
		is.validity = DefaultLeafValidity
	}
	if is.validity < time.Second {
		return is, fmt.Errorf("pki: leaf validity %s: must be at least 1s", validity)
	}
	if err := CheckServices(rotate); err != nil {
		return is, fmt.Errorf("pki: rotate: %w", err)
	}
	for _, r := range rotate {
		is.rotate[r] = true
	}
	return is, nil
}
