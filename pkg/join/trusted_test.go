package join

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"
)

// crossSign returns the certificate of newCA's subject and key signed by old.
func crossSign(t *testing.T, newCA, old *testCA) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(3),
		Subject:               newCA.cert.Subject,
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, old.cert, &newCA.key.PublicKey, old.key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// rotatedCluster is a supervisor after `kedge certificate rotate-ca`: it
// serves the new CA at /cacerts and a certificate of the new CA chained
// to the old one through a cross certificate.
func rotatedCluster(t *testing.T) (old *testCA, s *supervisor) {
	t.Helper()
	old = newTestCA(t)
	newCA := newTestCA(t)
	// The new CA needs its own subject to be told apart from the old.
	tmpl := *newCA.cert
	tmpl.Subject = pkix.Name{CommonName: "kedge-test-ca-2"}
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, &tmpl, &newCA.key.PublicKey, newCA.key)
	if err != nil {
		t.Fatal(err)
	}
	if newCA.cert, err = x509.ParseCertificate(der); err != nil {
		t.Fatal(err)
	}
	newCA.pem = pemOf(der)
	cert := newCA.serving(t, "127.0.0.1")
	cert.Certificate = append(cert.Certificate, crossSign(t, newCA, old))
	return old, startSupervisor(t, &cert, newCA.pem, "")
}

func TestPostTrustedAfterACARotation(t *testing.T) {
	old, s := rotatedCluster(t)
	oldTok := New(old.pem, testSecret) // the token of before the rotation
	var out struct{ Got string }

	// A new node with the old token: refused before any secret is sent.
	err := PostTrusted(context.Background(), s.URL(), oldTok, nil, UserNode, nil, "/v1/echo", map[string]string{"name": "n"}, &out, nil)
	var mismatch *CAMismatchError
	if !errors.As(err, &mismatch) {
		t.Fatalf("a new node with the old token: %v, want a CA mismatch", err)
	}
	// A node that holds an unrelated CA: the server cannot prove itself.
	other := newTestCA(t)
	err = PostTrusted(context.Background(), s.URL(), oldTok, other.pem, UserNode, nil, "/v1/echo", map[string]string{"name": "n"}, &out, nil)
	if err == nil || !strings.Contains(err.Error(), "the CA this node holds") {
		t.Fatalf("with another CA: %v", err)
	}
	for _, r := range s.requests() {
		if r.Authorization != "" {
			t.Fatalf("the secret was sent to %s before the server was verified", r.Path)
		}
	}
	// A node that joined before holds the old CA: the server's chain
	// (leaf, cross certificate) proves it, and the join goes on.
	log, buf := logBuffer()
	err = PostTrusted(context.Background(), s.URL(), oldTok, old.pem, UserNode, (*tls.Certificate)(nil), "/v1/echo", map[string]string{"name": "n"}, &out, log)
	if err != nil || out.Got != "n" {
		t.Fatalf("a node that joined before: %v, %+v", err, out)
	}
	if !strings.Contains(buf.String(), "put the cluster's new token") {
		t.Errorf("no warning about the outdated token:\n%s", buf)
	}
}

// pemOf encodes one DER certificate.
func pemOf(der []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}) }
