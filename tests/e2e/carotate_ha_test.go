package e2e

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kedge-io/kedge/pkg/join"
	"github.com/kedge-io/kedge/tests/e2e/harness"
	"github.com/kedge-io/kedge/tests/testimage"
)

// poller sends one request every interval while it is on, and counts.
type poller struct {
	name     string
	on       atomic.Bool
	busy     sync.WaitGroup // a request in flight
	polls    atomic.Int64
	failures atomic.Int64
	mu       sync.Mutex
	failed   []string
}

// run polls with do until ctx ends.
func (p *poller) run(ctx context.Context, wg *sync.WaitGroup, do func() error) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			if p.on.Load() {
				p.busy.Add(1)
				p.polls.Add(1)
				if err := do(); err != nil && ctx.Err() == nil {
					p.failures.Add(1)
					p.mu.Lock()
					if len(p.failed) < 5 {
						p.failed = append(p.failed, time.Now().Format("15:04:05.000")+" "+err.Error())
					}
					p.mu.Unlock()
				}
				p.busy.Done()
			}
			time.Sleep(250 * time.Millisecond)
		}
	}()
}

// pause stops p and waits for its request in flight.
func (p *poller) pause() { p.on.Store(false); p.busy.Wait() }

func (p *poller) String() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return fmt.Sprintf("%s: %d requests, %d failed %v", p.name, p.polls.Load(), p.failures.Load(), p.failed)
}

// getOK makes a GET with client and wants 200.
func getOK(client *http.Client, url string) error {
	resp, err := client.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
		return fmt.Errorf("status %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

// clientOf signs a client certificate in group system:masters, valid for
// an hour, with the CA (first certificate of caFile) of the key in keyFile:
// a long-lived credential of that CA, as a copied kubeconfig would hold
// (the cluster's own leaves live 90 s in this test).
func clientOf(t *testing.T, caFile, keyFile, name string) tls.Certificate {
	t.Helper()
	ca := firstCert(t, caFile)
	b, _ := pem.Decode(mustRead(t, keyFile))
	if b == nil {
		t.Fatalf("%s: no PEM", keyFile)
	}
	var caKey crypto.Signer
	if k, err := x509.ParseECPrivateKey(b.Bytes); err == nil {
		caKey = k
	} else if k, err := x509.ParsePKCS8PrivateKey(b.Bytes); err == nil {
		caKey = k.(crypto.Signer)
	} else {
		t.Fatalf("%s: %v", keyFile, err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name, Organization: []string{"system:masters"}},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// fixedClient is a client from inside node via, trusting roots only and
// presenting pair, one connection per request.
func fixedClient(via *harness.Node, roots *x509.CertPool, pair tls.Certificate) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext:       via.DialContext,
		TLSClientConfig:   &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair}},
	}}
}

// filesClient is a client from inside node via that reads its CA bundle
// and client certificate from files for every request, as kedge's
// components pick up renewed files.
func filesClient(via *harness.Node, caFile, certFile, keyFile string) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialTLSContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			roots := x509.NewCertPool()
			data, err := os.ReadFile(caFile)
			if err != nil || !roots.AppendCertsFromPEM(data) {
				return nil, fmt.Errorf("%s: %v", caFile, err)
			}
			// The certificate and the key are two files, renewed one after
			// the other: a read between the two is read again.
			pair, err := tls.LoadX509KeyPair(certFile, keyFile)
			for i := 0; err != nil && i < 5; i++ {
				time.Sleep(100 * time.Millisecond)
				pair, err = tls.LoadX509KeyPair(certFile, keyFile)
			}
			if err != nil {
				return nil, err
			}
			raw, err := via.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			host, _, _ := net.SplitHostPort(addr)
			conn := tls.Client(raw, &tls.Config{RootCAs: roots, ServerName: host, Certificates: []tls.Certificate{pair}})
			if err := conn.HandshakeContext(ctx); err != nil {
				raw.Close()
				return nil, err
			}
			return conn, nil
		},
	}}
}

// TestCARotationHA: `kedge certificate rotate-ca` on server a of three
// (a, b, c) with agent w: b and c get the new CAs through etcd and report
// it; during phase 1 clients that trust only the old CA (with the old admin
// client certificate) and clients that trust only the new one (with a client
// certificate of the new CA) reach every server and, through each apiserver, w's kubelet;
// requests from w through its load balancer (127.0.0.1:6444, with w's own
// files) and to w's kubelet through every server (with a's current files)
// run through both phases: 0 failures expected. `--finish` waits for every
// server, then all three drop the old CAs; a server with the old token is
// refused, one with the new token joins.
func TestCARotationHA(t *testing.T) {
	c := harness.NewCluster(t)
	image := testimage.Build(t)
	short := []string{"--cert-validity", "90s"} // client-go's refresh and the wait before --finish: about 1.5 min
	var a, b, cc, w *harness.Node
	c.Step("servers a, b, c and agent w", func() {
		a = startNode(t, c, image, "a", short...)
		a.WaitReady(5 * time.Minute)
		token := joinToken(t, a)
		aURL := "https://" + a.IP().String() + ":6443"
		b = startNode(t, c, image, "b", append([]string{"--server", aURL, "--token", token}, short...)...)
		b.WaitReady(5 * time.Minute)
		cc = startNode(t, c, image, "c", append([]string{"--server", aURL, "--token", token}, short...)...)
		cc.WaitReady(5 * time.Minute)
		waitVoters(c, a, "a voter,b voter,c voter", 2*time.Minute)
		w = startNode(t, c, image, "w", "agent", "--server", aURL, "--token", agentToken(t, a))
		waitNodeReady(c, a, w, 5*time.Minute)
	})
	servers := []*harness.Node{a, b, cc}
	oldToken := joinToken(t, a)
	aTLS := filepath.Join(a.DataDir(), "server", "tls")
	wTLS := filepath.Join(w.DataDir(), "agent", "tls")
	oldRoots := readPool(t, filepath.Join(aTLS, "server-ca.crt"))
	oldAdmin := clientOf(t, filepath.Join(aTLS, "client-ca.crt"), filepath.Join(aTLS, "client-ca.key"), "e2e-old-ca")
	started := map[string]time.Time{}
	for _, n := range append(servers, w) {
		started[n.Name()] = n.Started()
	}

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var wg sync.WaitGroup
	var all, old, fresh []*poller
	add := func(name string, on bool, do func() error) *poller {
		p := &poller{name: name}
		p.on.Store(on)
		p.run(ctx, &wg, do)
		all = append(all, p)
		return p
	}
	// Through both phases: w's load balancer with w's files; w's kubelet
	// through every apiserver with a's current admin files.
	lb := filesClient(w, filepath.Join(wTLS, "server-ca.crt"), filepath.Join(wTLS, "kubelet-client.crt"), filepath.Join(wTLS, "kubelet-client.key"))
	add("w → its load balancer → apiservers (w's files)", true, func() error { return getOK(lb, "https://127.0.0.1:6444/api/v1/nodes/w") })
	for _, s := range servers {
		cur := filesClient(a, filepath.Join(aTLS, "server-ca.crt"), filepath.Join(aTLS, "admin.crt"), filepath.Join(aTLS, "admin.key"))
		url := "https://" + net.JoinHostPort(s.IP().String(), "6443") + "/api/v1/nodes/w/proxy/healthz"
		add("apiserver "+s.Name()+" → w's kubelet (a's files)", true, func() error { return getOK(cur, url) })
	}
	// Phase 1 only: the old CA and the old admin certificate alone.
	for _, s := range servers {
		cl := fixedClient(a, oldRoots, oldAdmin)
		url := "https://" + net.JoinHostPort(s.IP().String(), "6443") + "/api/v1/nodes/w/proxy/healthz"
		old = append(old, add("old CA only → "+s.Name()+" → w's kubelet", false, func() error { return getOK(cl, url) }))
	}

	var rotated time.Time
	c.Step("rotate-ca on a; b and c report the new CAs; w renews", func() {
		for _, p := range old {
			p.on.Store(true)
		}
		time.Sleep(2 * time.Second) // the old-CA clients work before
		rotated = time.Now()
		out, err := a.Exec(c.Bin(), "certificate", "rotate-ca")
		if err != nil {
			t.Fatalf("rotate-ca: %v\n%s", err, out)
		}
		t.Logf("kedge certificate rotate-ca on a (%s):\n%s", time.Since(rotated).Round(time.Millisecond), redactTokens(out))
		for _, s := range servers {
			if !strings.Contains(out, "  "+s.Name()+": start") {
				t.Errorf("rotate-ca does not report %s at phase start:\n%s", s.Name(), redactTokens(out))
			}
		}
		want := mustRead(t, filepath.Join(aTLS, "server-ca.crt"))
		for _, s := range servers[1:] {
			if got := mustRead(t, filepath.Join(s.DataDir(), "server", "tls", "server-ca.crt")); string(got) != string(want) {
				t.Errorf("%s's server-ca.crt differs from a's", s.Name())
			}
		}
		newRoots := x509.NewCertPool()
		newRoots.AddCert(firstCert(t, filepath.Join(aTLS, "server-ca.crt")))
		newAdmin := clientOf(t, filepath.Join(aTLS, "client-ca.crt"), filepath.Join(aTLS, "client-ca.key"), "e2e-new-ca")
		// Every server serves a certificate of the new CA (its chain
		// verifies against the new CA alone) once it reported.
		for _, s := range servers {
			cl := fixedClient(a, newRoots, newAdmin)
			url := "https://" + net.JoinHostPort(s.IP().String(), "6443") + "/api/v1/nodes/w/proxy/healthz"
			c.Eventually(30*time.Second, "new-CA client → "+s.Name(), func() error { return getOK(cl, url) })
			fresh = append(fresh, add("new CA only → "+s.Name()+" → w's kubelet", true, func() error { return getOK(cl, url) }))
		}
		c.Eventually(3*time.Minute, "w's kubelet serving a certificate of the new CA", func() error {
			leaf, err := kubeletLeaf(a, w)
			if err != nil {
				return err
			}
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: newRoots}); err != nil {
				return fmt.Errorf("issued by %s", leaf.Issuer)
			}
			return nil
		})
		t.Logf("w's kubelet serves a certificate of the new CA %s after the command began", time.Since(rotated).Round(time.Second))
	})
	newToken := joinToken(t, a)
	if newToken == oldToken || mustParse(t, newToken).Secret != mustParse(t, oldToken).Secret {
		t.Fatal("the join token did not change its CA hash (only)")
	}
	for _, s := range servers[1:] {
		if tok := joinToken(t, s); mustParse(t, tok).CAHash != mustParse(t, newToken).CAHash {
			t.Errorf("%s's token file pins %s, want the new CA's %s", s.Name(), mustParse(t, tok).CAHash, mustParse(t, newToken).CAHash)
		}
	}

	c.Step("rotate-ca --finish on b; every server drops the old CAs", func() {
		var out string
		for {
			for _, p := range old {
				p.pause() // the old admin certificate is refused once the old CA is gone
			}
			var err error
			out, err = b.Exec(c.Bin(), "certificate", "rotate-ca", "--finish")
			if err == nil {
				break
			}
			if !strings.Contains(out, "too early") && !strings.Contains(out, "not every") {
				t.Fatalf("rotate-ca --finish: %v\n%s", err, out)
			}
			if time.Since(rotated) > 6*time.Minute {
				t.Fatalf("rotate-ca --finish still refused %s after the start:\n%s", time.Since(rotated).Round(time.Second), out)
			}
			for _, p := range old {
				p.on.Store(true)
			}
			time.Sleep(5 * time.Second)
		}
		t.Logf("kedge certificate rotate-ca --finish on b, %s after the start:\n%s", time.Since(rotated).Round(time.Second), redactTokens(out))
		want := mustRead(t, filepath.Join(aTLS, "server-ca.crt"))
		for _, s := range servers {
			if !strings.Contains(out, "  "+s.Name()+": finish") {
				t.Errorf("--finish does not report %s at phase finish", s.Name())
			}
			for _, f := range []string{"server-ca.crt", "client-ca.crt", "etcd/peer-ca.crt"} {
				if n := len(certsOf(t, filepath.Join(s.DataDir(), "server", "tls", f))); n != 1 {
					t.Errorf("%s's %s holds %d certificates after --finish, want 1", s.Name(), f, n)
				}
			}
			if got := mustRead(t, filepath.Join(s.DataDir(), "server", "tls", "server-ca.crt")); string(got) != string(want) {
				t.Errorf("%s's server-ca.crt differs from a's after --finish", s.Name())
			}
		}
		c.Eventually(2*time.Minute, "w's server-ca.crt with the new CA alone", func() error {
			if n := len(certsOf(t, filepath.Join(wTLS, "server-ca.crt"))); n != 1 {
				return fmt.Errorf("%d certificates", n)
			}
			return nil
		})
		// The old CA is no longer trusted by any apiserver.
		begin := time.Now()
		for _, s := range servers {
			cl := fixedClient(a, oldRoots, oldAdmin)
			url := "https://" + net.JoinHostPort(s.IP().String(), "6443") + "/api/v1/namespaces"
			c.Eventually(2*time.Minute, "the old CA's client certificate refused by "+s.Name(), func() error {
				if err := getOK(cl, url); err == nil || !strings.Contains(err.Error(), "401") {
					return fmt.Errorf("answer %v, want 401", err)
				}
				return nil
			})
		}
		t.Logf("every apiserver refuses the old CA's client certificate %s after --finish returned", time.Since(begin).Round(time.Second))
		time.Sleep(10 * time.Second) // traffic after the finish
	})
	stop()
	wg.Wait()
	for _, p := range all {
		t.Log(p)
		if p.failures.Load() > 0 {
			t.Errorf("%s", p)
		}
		if p.polls.Load() == 0 {
			t.Errorf("%s: no request made", p.name)
		}
	}
	for _, n := range append(servers, w) {
		if !n.Started().Equal(started[n.Name()]) || !n.Running() {
			t.Errorf("%s restarted during the rotation", n.Name())
		}
	}

	c.Step("a server with the old token is refused; d joins with the new one", func() {
		x := startNode(t, c, image, "x", "--server", "https://"+b.IP().String()+":6443", "--token", oldToken)
		c.Eventually(2*time.Minute, "server x with the old token refused", func() error {
			if x.Running() {
				return fmt.Errorf("x still running")
			}
			return nil
		})
		if log := x.LogSinceStart(); !strings.Contains(log, "does not match") {
			t.Errorf("x's log does not say the CA does not match:\n%s", x.LogTail(2000))
		}
		begin := time.Now()
		d := startNode(t, c, image, "d", "--server", "https://"+b.IP().String()+":6443", "--token", newToken)
		d.WaitReady(5 * time.Minute)
		waitNodeReady(c, a, d, 5*time.Minute)
		waitVoters(c, a, "a voter,b voter,c voter,d voter", 2*time.Minute)
		t.Logf("server d joined with the new token in %s", time.Since(begin).Round(time.Second))
		got := mustRead(t, filepath.Join(d.DataDir(), "server", "tls", "server-ca.crt"))
		if join.CAHash(got) != mustParse(t, newToken).CAHash {
			t.Error("d's server-ca.crt is not the new CA")
		}
		names := strings.Fields(strings.ReplaceAll(a.MustKubectl("get", "nodes", "-o", "name"), "node/", ""))
		if !slices.Equal(names, []string{"a", "b", "c", "d", "w"}) {
			t.Errorf("nodes %v", names)
		}
	})
	t.Log("\n" + c.Summary())
}

// redactTokens hides the secrets of the tokens rotate-ca prints.
func redactTokens(out string) string {
	lines := strings.Split(out, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "K") && strings.Contains(l, "::") {
			lines[i] = l[:strings.Index(l, "::")] + "::<secret>"
		}
	}
	return strings.Join(lines, "\n")
}
