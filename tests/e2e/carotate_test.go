package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kedge-io/kedge/pkg/join"
	"github.com/kedge-io/kedge/tests/e2e/harness"
	"github.com/kedge-io/kedge/tests/testimage"
)

// TestCARotationWithAgent: `kedge certificate rotate-ca` on server a while
// agent w runs a pod: w fetches the new CA bundles and renews its leaves
// through the supervisor, its kubelet serves a certificate of the new CA
// (checked on the wire), w stays Ready and its pod runs, and requests
// through the apiserver to w's kubelet keep succeeding, from a client that
// trusts only the old CA (failures counted: 0 expected). `--finish` checks
// w's kubelet on the wire and drops the old CAs; w's copies follow. An agent
// with the old token is refused; one with the new token joins; w restarted
// with its old token rejoins (it re-verifies with the CA it holds).
func TestCARotationWithAgent(t *testing.T) {
	c := harness.NewCluster(t)
	image := testimage.Build(t)
	var a, w *harness.Node
	c.Step("server a, agent w with a pod", func() {
		// Short leaves: client-go's certificate refresh, and the wait
		// before --finish, scale down to about a minute and a half.
		a = startNode(t, c, image, "a", "--cert-validity", "90s")
		a.WaitReady(5 * time.Minute)
		w = startNode(t, c, image, "w", "agent", "--server", "https://"+a.IP().String()+":6443", "--token", agentToken(t, a))
		waitNodeReady(c, a, w, 5*time.Minute)
		if _, err := a.Kubectl("run", "web-w", "--image="+webImage, "--image-pull-policy=Never", "--port=8080", `--overrides={"spec":{"nodeName":"w"}}`); err != nil {
			t.Fatal(err)
		}
		c.Eventually(3*time.Minute, "pod web-w Running", func() error {
			if s, err := a.Kubectl("get", "pod", "web-w", "-o", "jsonpath={.status.phase}"); s != "Running" {
				return fmt.Errorf("phase %q, %v", s, err)
			}
			return nil
		})
	})
	oldAgentToken := agentToken(t, a)
	tlsDir := filepath.Join(a.DataDir(), "server", "tls")
	wTLS := filepath.Join(w.DataDir(), "agent", "tls")
	oldCA := readPool(t, filepath.Join(tlsDir, "server-ca.crt"))
	started := w.Started()

	// A client that trusts only the old CA asks the apiserver for w's
	// kubelet (apiserver → kubelet: both sides' new certificates) every 200 ms.
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var polls, failures atomic.Int64
	var mu sync.Mutex
	var failed []string
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext:       a.DialContext,
		TLSClientConfig: &tls.Config{RootCAs: oldCA, ServerName: a.IP().String(), GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			pair, err := tls.LoadX509KeyPair(filepath.Join(tlsDir, "admin.crt"), filepath.Join(tlsDir, "admin.key"))
			return &pair, err
		}},
	}}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			polls.Add(1)
			resp, err := client.Get("https://" + net.JoinHostPort(a.IP().String(), "6443") + "/api/v1/nodes/w/proxy/healthz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("status %s", resp.Status)
				}
			}
			if err != nil {
				failures.Add(1)
				mu.Lock()
				if len(failed) < 10 {
					failed = append(failed, time.Now().Format("15:04:05.000")+" "+err.Error())
				}
				mu.Unlock()
			}
			time.Sleep(200 * time.Millisecond)
		}
	}()

	var newCA *x509.CertPool
	var rotated time.Time
	c.Step("rotate-ca on a; w renews with the new CA", func() {
		begin := time.Now()
		rotated = begin
		out, err := a.Exec(c.Bin(), "certificate", "rotate-ca")
		if err != nil {
			t.Fatalf("rotate-ca: %v\n%s", err, out)
		}
		t.Logf("kedge certificate rotate-ca (%s): %s", time.Since(begin).Round(time.Millisecond), firstLine(out))
		newCA = x509.NewCertPool()
		newCA.AddCert(firstCert(t, filepath.Join(tlsDir, "server-ca.crt")))
		c.Eventually(3*time.Minute, "w's kubelet serving a certificate of the new CA", func() error {
			leaf, err := kubeletLeaf(a, w)
			if err != nil {
				return err
			}
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: newCA}); err != nil {
				return fmt.Errorf("issued by %s", leaf.Issuer)
			}
			return nil
		})
		t.Logf("w's kubelet serves a certificate of the new CA %s after the command began", time.Since(begin).Round(time.Second))
		if n := len(certsOf(t, filepath.Join(wTLS, "server-ca.crt"))); n != 2 {
			t.Errorf("w's server-ca.crt holds %d certificates, want the bundle new + old", n)
		}
	})
	newAgentToken := agentToken(t, a)
	c.Step("rotate-ca --finish; w's bundles lose the old CA", func() {
		var out string
		c.Eventually(4*time.Minute, "rotate-ca --finish accepted", func() error {
			var err error
			if out, err = a.Exec(c.Bin(), "certificate", "rotate-ca", "--finish"); err != nil && !strings.Contains(out, "too early") {
				t.Fatalf("rotate-ca --finish: %v\n%s", err, out)
			} else if err != nil {
				time.Sleep(4 * time.Second) // too early: it says until when
			}
			return err
		})
		t.Logf("kedge certificate rotate-ca --finish, %s after the start: %s", time.Since(rotated).Round(time.Second), firstLine(out))
		c.Eventually(2*time.Minute, "w's server-ca.crt with the new CA alone", func() error {
			if n := len(certsOf(t, filepath.Join(wTLS, "server-ca.crt"))); n != 1 {
				return fmt.Errorf("%d certificates", n)
			}
			return nil
		})
		if s, err := a.Kubectl("get", "node", "w", "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`); s != "True" {
			t.Errorf("w Ready=%q, %v", s, err)
		}
		if out, err := a.Kubectl("exec", "web-w", "--", "/webapp", "get", "http://localhost:8080/"); err != nil || !strings.HasPrefix(out, "hello from web-w") {
			t.Errorf("exec in w's pod after the rotation: %q, %v", out, err)
		}
	})
	stop()
	wg.Wait()
	t.Logf("apiserver → w's kubelet through the rotation, from a client trusting the old CA only: %d requests, %d failed %v", polls.Load(), failures.Load(), failed)
	if failures.Load() > 0 {
		t.Errorf("%d of %d requests failed: %v", failures.Load(), polls.Load(), failed)
	}
	if !w.Started().Equal(started) || !w.Running() {
		t.Error("agent w restarted during the rotation")
	}
	if join.CAHash(mustRead(t, filepath.Join(tlsDir, "server-ca.crt"))) != mustParse(t, newAgentToken).CAHash {
		t.Error("the agent token does not pin server-ca.crt after --finish")
	}

	c.Step("the old token is refused, the new one joins; w restarted with its old token rejoins", func() {
		x := startNode(t, c, image, "x", "agent", "--server", "https://"+a.IP().String()+":6443", "--token", oldAgentToken)
		c.Eventually(2*time.Minute, "agent x with the old token refused", func() error {
			if x.Running() {
				return fmt.Errorf("x still running")
			}
			return nil
		})
		if log := x.LogSinceStart(); !strings.Contains(log, "does not match") {
			t.Errorf("x's log does not say the CA does not match:\n%s", x.LogTail(2000))
		}
		y := startNode(t, c, image, "y", "agent", "--server", "https://"+a.IP().String()+":6443", "--token", newAgentToken)
		waitNodeReady(c, a, y, 5*time.Minute)
		w.Restart()
		waitNodeReady(c, a, w, 5*time.Minute)
		if !strings.Contains(w.LogSinceStart(), "put the cluster's new token") {
			t.Error("w rejoined without the warning about its outdated token")
		}
	})
}

// kubeletLeaf is the certificate n's kubelet serves, seen from server s.
func kubeletLeaf(s, n *harness.Node) (*x509.Certificate, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	raw, err := s.DialContext(ctx, "tcp", net.JoinHostPort(n.IP().String(), "10250"))
	if err != nil {
		return nil, err
	}
	conn := tls.Client(raw, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // verified by the caller
	defer conn.Close()
	if err := conn.HandshakeContext(ctx); err != nil {
		return nil, err
	}
	return conn.ConnectionState().PeerCertificates[0], nil
}

// readPool is a pool of the certificates of a PEM file.
func readPool(t *testing.T, path string) *x509.CertPool {
	t.Helper()
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(mustRead(t, path)) {
		t.Fatalf("%s: no certificate", path)
	}
	return p
}

// certsOf parses the certificates of a PEM file.
func certsOf(t *testing.T, path string) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	data := mustRead(t, path)
	for {
		var b *pem.Block
		if b, data = pem.Decode(data); b == nil {
			return out
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, c)
	}
}

// firstCert is the first certificate of a PEM file.
func firstCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	all := certsOf(t, path)
	if len(all) == 0 {
		t.Fatalf("%s: no certificate", path)
	}
	return all[0]
}

// mustRead reads a file or fails the test.
func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// mustParse parses a token or fails the test.
func mustParse(t *testing.T, s string) join.Token {
	t.Helper()
	tok, err := join.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// firstLine is the first line of s (the command's summary, without tokens).
func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
