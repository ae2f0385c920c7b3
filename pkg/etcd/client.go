package etcd

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// ClientTLS are the files a client of the local member authenticates with:
// the CA that signed etcd's serving certificate and a client certificate it
// also signed (pki.Bundle's EtcdServerCA, EtcdClientCert, EtcdClientKey).
type ClientTLS struct {
	CA, Cert, Key string
}

// NewClient returns a client of the member at endpoint (e.g. the local
// https://127.0.0.1:2379). The caller closes it.
func NewClient(endpoint string, t ClientTLS) (*clientv3.Client, error) {
	pair, err := tls.LoadX509KeyPair(t.Cert, t.Key)
	if err != nil {
		return nil, fmt.Errorf("etcd client: %w", err)
	}
	caPEM, err := os.ReadFile(t.CA)
	if err != nil {
		return nil, fmt.Errorf("etcd client: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("etcd client: no certificate in %s", t.CA)
	}
	c, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{endpoint},
		DialTimeout: 5 * time.Second,
		TLS:         &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: pool, MinVersion: tls.VersionTLS12},
		Logger:      zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("etcd client %s: %w", endpoint, err)
	}
	return c, nil
}
