package integration

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	certutil "k8s.io/client-go/util/cert"

	"github.com/kedge-io/kedge/pkg/join"
)

// TestCARotation replaces the CAs of a running server with its node:
// `kedge certificate rotate-ca` makes new CAs, and the apiserver (6443), the
// kubelet (10250) and etcd (2379) serve certificates of the new CAs on new
// handshakes, which verify against the new CA alone and, through the
// cross-signed chain, against the old one alone (a trust store that did not
// reload, as etcd's); API clients that trust only the old CA see no error
// through both phases; the join token changes, an old-CA-pinned token is
// refused by a joining node and the new one accepted; `--finish` drops the
// old CAs; the server restarts with the new CAs.
func TestCARotation(t *testing.T) {
	n := newNode(t)
	t.Cleanup(func() { n.killall() })
	// Short leaves (renewed every ~72 s, through the rotation too) scale
	// client-go's certificate refresh down to seconds, and with it the
	// wait before --finish (a minute for the agents' check, the refresh
	// period and 30 s).
	n.start("--cert-validity", certValidity.String())
	n.waitReady(3 * time.Minute)
	n.waitNodeReady(2 * time.Minute)
	tlsDir := filepath.Join(n.dataDir(), "server", "tls")
	oldServerCA := pool(t, filepath.Join(tlsDir, "server-ca.crt"))
	oldEtcdCA := pool(t, filepath.Join(tlsDir, "etcd", "server-ca.crt"))
	oldToken := strings.TrimSpace(string(readBytes(t, filepath.Join(n.dataDir(), "server", "token"))))
	oldCASubject := readCertFile(t, filepath.Join(tlsDir, "server-ca.crt")).Subject.String()

	// Clients polling the API through the rotation, with the admin
	// certificate from its files, trusting only the old server CA: one on
	// a new connection per request, one on a kept-alive HTTP/2 connection
	// that it closes, between two requests, when the admin certificate
	// file changed (as kedge's in-process clients do within client-go's
	// refresh period; a client that keeps a certificate of the old CA past
	// --finish is refused, see docs/certificates.md).
	ctx, stopPolling := context.WithCancel(context.Background())
	defer stopPolling()
	var polls, failures atomic.Int64
	var failMu sync.Mutex
	var failed []string
	fail := func(what string, err error) {
		failures.Add(1)
		failMu.Lock()
		defer failMu.Unlock()
		if len(failed) < 10 {
			failed = append(failed, fmt.Sprintf("%s %s: %v", time.Now().Format("15:04:05.000"), what, err))
		}
	}
	adminCert, adminKey := filepath.Join(tlsDir, "admin.crt"), filepath.Join(tlsDir, "admin.key")
	oldTrust := &tls.Config{RootCAs: oldServerCA, GetClientCertificate: pairLoader(adminCert, adminKey)}
	fresh := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, TLSClientConfig: oldTrust.Clone()}}
	keptTransport := &http.Transport{ForceAttemptHTTP2: true, TLSClientConfig: oldTrust.Clone()}
	kept := &http.Client{Timeout: 10 * time.Second, Transport: keptTransport}
	url := "https://127.0.0.1:" + strconv.Itoa(n.port) + "/api/v1/namespaces/default"
	poll := func(c *http.Client, what string) {
		polls.Add(1)
		resp, err := c.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("status %s", resp.Status)
			}
		}
		if err != nil {
			fail(what, err)
		}
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			poll(fresh, "new connection")
			time.Sleep(100 * time.Millisecond)
		}
	}()
	go func() {
		defer wg.Done()
		var seen time.Time
		for ctx.Err() == nil {
			if st, err := os.Stat(adminCert); err == nil && !st.ModTime().Equal(seen) {
				seen = st.ModTime()
				keptTransport.CloseIdleConnections()
			}
			poll(kept, "kept-alive connection")
			time.Sleep(100 * time.Millisecond)
		}
	}()
	logBefore := len(n.log.String())

	begin := time.Now()
	out, code := runKedge(t, n.bin, nil, "certificate", "rotate-ca", "--data-dir", n.dataDir())
	if code != 0 || !strings.Contains(out, "new CAs in place") {
		t.Fatalf("certificate rotate-ca = %d:\n%s", code, out)
	}
	t.Logf("kedge certificate rotate-ca (%s):\n%s", time.Since(begin).Round(time.Millisecond), redact(out))
	newCAFile := readCertFile(t, filepath.Join(tlsDir, "server-ca.crt"))
	if newCAFile.Subject.String() == oldCASubject {
		t.Fatal("server-ca.crt's first certificate is still the old CA")
	}
	bundle := certsIn(t, filepath.Join(tlsDir, "server-ca.crt"))
	if len(bundle) != 2 || bundle[1].Subject.String() != oldCASubject {
		t.Fatalf("server-ca.crt holds %d certificates, want the new CA and the old one", len(bundle))
	}

	// The token: a new CA hash, the hash of what /cacerts serves now.
	newToken := strings.TrimSpace(string(readBytes(t, filepath.Join(n.dataDir(), "server", "token"))))
	oldTok, _ := join.Parse(oldToken)
	newTok, err := join.Parse(newToken)
	if err != nil || newTok.CAHash == oldTok.CAHash || newTok.Secret != oldTok.Secret {
		t.Fatalf("token after rotate-ca: %v; want the same secret with a new CA hash", err)
	}
	if !strings.Contains(out, newToken) {
		t.Error("rotate-ca did not print the new token")
	}
	server := "https://127.0.0.1:" + strconv.Itoa(n.port)
	if _, err := join.FetchCA(context.Background(), server, newTok, nil); err != nil {
		t.Errorf("a node joining with the new token: %v", err)
	}
	var mismatch *join.CAMismatchError
	if _, err := join.FetchCA(context.Background(), server, oldTok, nil); !errors.As(err, &mismatch) {
		t.Errorf("a node joining with the old token: %v, want a CA mismatch", err)
	} else {
		t.Logf("old token refused for a new join: %v", err)
	}

	// On the wire: every endpoint serves a leaf of the new CA, verified by
	// the new CA alone and by the old one alone through the cross chain.
	newServerCA := x509.NewCertPool()
	newServerCA.AddCert(newCAFile)
	newEtcdCA := x509.NewCertPool()
	newEtcdCA.AddCert(readCertFile(t, filepath.Join(tlsDir, "etcd", "server-ca.crt")))
	etcdClient := func(roots *x509.CertPool) *tls.Config {
		return &tls.Config{RootCAs: roots, GetClientCertificate: pairLoader(filepath.Join(tlsDir, "etcd", "client.crt"), filepath.Join(tlsDir, "etcd", "client.key"))}
	}
	type check struct {
		name, addr string
		oldRoots   *x509.CertPool
		newRoots   *x509.CertPool
		client     func(*x509.CertPool) *tls.Config
	}
	plain := func(roots *x509.CertPool) *tls.Config { return &tls.Config{RootCAs: roots} }
	checks := []check{
		{"apiserver", "127.0.0.1:" + strconv.Itoa(n.port), oldServerCA, newServerCA, plain},
		{"kubelet", "127.0.0.1:10250", oldServerCA, newServerCA, plain},
		{"etcd", "127.0.0.1:2379", oldEtcdCA, newEtcdCA, etcdClient},
	}
	for _, c := range checks {
		var leaf *x509.Certificate
		for deadline := time.Now().Add(30 * time.Second); ; {
			leaf, err = served(&endpoint{name: c.name, addr: c.addr, tls: c.client(c.newRoots)})
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: no certificate of the new CA 30 s after rotate-ca: %v", c.name, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if _, err := served(&endpoint{name: c.name, addr: c.addr, tls: c.client(c.oldRoots)}); err != nil {
			t.Errorf("%s: a client that trusts only the old CA: %v", c.name, err)
		}
		t.Logf("%s serves %s issued by %s (served %s after the command began)", c.name, leaf.Subject, leaf.Issuer, time.Since(begin).Round(time.Millisecond))
	}
	if out, code := runKedge(t, n.bin, nil, "certificate", "rotate-ca", "--data-dir", n.dataDir()); code == 0 || !strings.Contains(out, "--finish") {
		t.Errorf("a second rotate-ca = %d, want an error that says to finish first:\n%s", code, out)
	}
	if _, err := n.kubectl("get", "--raw", "/api/v1/nodes/integration/proxy/healthz"); err != nil {
		t.Errorf("apiserver → kubelet after rotate-ca: %v", err)
	}

	// Phase 2: the old CAs go, once the clients had the time to reconnect
	// with their new certificates.
	out, code = runKedge(t, n.bin, nil, "certificate", "rotate-ca", "--finish", "--data-dir", n.dataDir())
	if code == 0 || !strings.Contains(out, "too early") {
		t.Fatalf("rotate-ca --finish right after the start = %d, want it refused as too early:\n%s", code, out)
	}
	t.Logf("rotate-ca --finish right after the start: %s", strings.TrimSpace(out))
	for {
		if time.Since(begin) > 4*time.Minute {
			t.Fatalf("rotate-ca --finish still refused 4 minutes after the start:\n%s", out)
		}
		time.Sleep(5 * time.Second)
		finish := time.Now()
		if out, code = runKedge(t, n.bin, nil, "certificate", "rotate-ca", "--finish", "--data-dir", n.dataDir()); code == 0 {
			t.Logf("kedge certificate rotate-ca --finish, %s after the start (%s):\n%s", time.Since(begin).Round(time.Second), time.Since(finish).Round(time.Millisecond), redact(out))
			break
		}
		if !strings.Contains(out, "too early") {
			t.Fatalf("rotate-ca --finish = %d:\n%s", code, out)
		}
	}
	if !strings.Contains(out, "old CAs dropped") {
		t.Fatalf("rotate-ca --finish:\n%s", out)
	}
	for _, f := range []string{"server-ca.crt", "client-ca.crt", "request-header-ca.crt", "etcd/server-ca.crt", "etcd/peer-ca.crt"} {
		if c := certsIn(t, filepath.Join(tlsDir, f)); len(c) != 1 {
			t.Errorf("%s holds %d certificates after --finish, want the new CA", f, len(c))
		}
	}
	if tok := strings.TrimSpace(string(readBytes(t, filepath.Join(n.dataDir(), "server", "token")))); tok != newToken {
		t.Error("the token changed again at --finish")
	}
	if _, err := n.kubectl("get", "nodes"); err != nil {
		t.Errorf("kubectl with the rewritten --write-kubeconfig: %v", err)
	}
	time.Sleep(2 * time.Second)
	stopPolling()
	wg.Wait()
	t.Logf("API polls through the rotation: %d, failed: %d %v", polls.Load(), failures.Load(), failed)
	if failures.Load() > 0 {
		t.Errorf("%d of %d polls failed: %v", failures.Load(), polls.Load(), failed)
	}

	// kedge's own components (controller-manager, scheduler, kubelet,
	// kube-proxy, …) were not refused either.
	for l := range strings.SplitSeq(n.log.String()[logBefore:], "\n") {
		if strings.Contains(l, "Unauthorized") || strings.Contains(l, "x509:") {
			t.Errorf("kedge log during the rotation: %s", l)
		}
	}

	// A restart builds every trust store from the new CAs alone.
	n.stop(60 * time.Second)
	n.start()
	n.waitReady(3 * time.Minute)
	n.waitNodeReady(2 * time.Minute)
	if leaf, err := served(&endpoint{name: "etcd", addr: "127.0.0.1:2379", tls: etcdClient(newEtcdCA)}); err != nil {
		t.Errorf("etcd after the restart: %v", err)
	} else {
		t.Logf("after a restart etcd serves a certificate of %s", leaf.Issuer)
	}
	n.stop(60 * time.Second)
}

// certsIn parses every certificate of a PEM file.
func certsIn(t *testing.T, path string) []*x509.Certificate {
	t.Helper()
	certs, err := certutil.ParseCertsPEM(readBytes(t, path))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return certs
}

// redact hides the secrets of the tokens in out.
func redact(out string) string {
	var lines []string
	for l := range strings.SplitSeq(out, "\n") {
		if i := strings.Index(l, "::"); strings.HasPrefix(l, join.Prefix) && i > 0 {
			l = l[:i] + "::<secret>"
		}
		lines = append(lines, l)
	}
	return strings.Join(lines, "\n")
}

// readBytes reads a file or fails the test.
func readBytes(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
