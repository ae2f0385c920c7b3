package integration

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	certutil "k8s.io/client-go/util/cert"
)

// certValidity is the leaf validity of the renewal test: leaves are renewed
// about 27 s before they expire, 72 s after they were issued.
const certValidity = 90 * time.Second

// endpoint is a TLS server of the node whose certificate the test follows.
type endpoint struct {
	name, addr string
	file       string // the certificate file it serves
	tls        *tls.Config
	serial     string
	changes    []time.Duration // file written → first handshake with it
}

// TestCertificateRenewal runs a server with 90-second leaves: every leaf is
// renewed while kedge runs, the apiserver (6443), the kubelet (10250),
// etcd (2379), metrics-server (10262), the controller-manager (10257) and
// the scheduler (10259) serve the renewed certificates on new handshakes
// without a restart, clients polling the API see no error while the first
// certificates expire, and `kedge certificate check|rotate`, the metric and
// the Events work.
func TestCertificateRenewal(t *testing.T) {
	n := newNode(t)
	t.Cleanup(func() { n.killall() })
	n.start("--cert-validity", certValidity.String())
	n.waitReady(3 * time.Minute)
	n.waitNodeReady(2 * time.Minute)
	pid := n.cmd.Process.Pid
	tlsDir := filepath.Join(n.dataDir(), "server", "tls")
	agentTLS := filepath.Join(n.dataDir(), "agent", "tls")
	serverCA := pool(t, filepath.Join(tlsDir, "server-ca.crt"))
	firstExpiry := readCertFile(t, filepath.Join(tlsDir, "apiserver.crt")).NotAfter
	for _, f := range []string{filepath.Join(tlsDir, "apiserver.crt"), filepath.Join(agentTLS, "kubelet-serving.crt"), filepath.Join(tlsDir, "etcd", "server.crt")} {
		if c := readCertFile(t, f); c.NotAfter.Sub(c.NotBefore) > 2*certValidity {
			t.Fatalf("%s: valid %s, want about --cert-validity %s", f, c.NotAfter.Sub(c.NotBefore), certValidity)
		}
	}

	// Two clients poll the API throughout, loading the admin certificate
	// from its files: one opens a new TLS connection for every request, the
	// other keeps one HTTP/2 connection across the apiserver's serving
	// certificate renewals and reconnects, between two requests, when the
	// admin certificate file changed (before the old one expires, as a
	// client must).
	ctx, stopPolling := context.WithCancel(context.Background())
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
	fresh := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, TLSClientConfig: &tls.Config{
		RootCAs: serverCA, GetClientCertificate: pairLoader(adminCert, adminKey),
	}}}
	keptTransport := &http.Transport{ForceAttemptHTTP2: true, TLSClientConfig: &tls.Config{
		RootCAs: serverCA, GetClientCertificate: pairLoader(adminCert, adminKey),
	}}
	kept := &http.Client{Timeout: 10 * time.Second, Transport: keptTransport}
	var keptConns atomic.Int64
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
				keptConns.Add(1)
			}
			poll(kept, "kept-alive connection")
			time.Sleep(100 * time.Millisecond)
		}
	}()
	rest, err := clientcmd.BuildConfigFromFlags("", filepath.Join(n.dataDir(), "server", "cred", "admin.kubeconfig"))
	if err != nil {
		t.Fatal(err)
	}
	kube := kubernetes.NewForConfigOrDie(rest)

	etcdTLS := &tls.Config{
		RootCAs:              pool(t, filepath.Join(tlsDir, "etcd", "server-ca.crt")),
		GetClientCertificate: pairLoader(filepath.Join(tlsDir, "etcd", "client.crt"), filepath.Join(tlsDir, "etcd", "client.key")),
	}
	eps := []*endpoint{
		{name: "apiserver", addr: "127.0.0.1:" + strconv.Itoa(n.port), file: filepath.Join(tlsDir, "apiserver.crt"), tls: &tls.Config{RootCAs: serverCA}},
		{name: "kubelet", addr: "127.0.0.1:10250", file: filepath.Join(agentTLS, "kubelet-serving.crt"), tls: &tls.Config{RootCAs: serverCA}},
		{name: "etcd", addr: "127.0.0.1:2379", file: filepath.Join(tlsDir, "etcd", "server.crt"), tls: etcdTLS},
		{name: "metrics-server", addr: "127.0.0.1:10262", file: filepath.Join(tlsDir, "metrics-server.crt"), tls: &tls.Config{RootCAs: serverCA, ServerName: "metrics-server.kube-system.svc"}},
		// kedge's certificates, not the self-signed ones upstream makes on every start.
		{name: "controller-manager", addr: "127.0.0.1:10257", file: filepath.Join(tlsDir, "controller-manager-serving.crt"), tls: &tls.Config{RootCAs: serverCA, ServerName: "localhost"}},
		{name: "scheduler", addr: "127.0.0.1:10259", file: filepath.Join(tlsDir, "scheduler-serving.crt"), tls: &tls.Config{RootCAs: serverCA, ServerName: "localhost"}},
	}
	for _, e := range eps {
		// The scheduler may start listening a moment after node Ready.
		c, err := served(e)
		for wait := time.Now().Add(time.Minute); err != nil && time.Now().Before(wait); c, err = served(e) {
			time.Sleep(200 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("%s: %v", e.name, err)
		}
		e.serial = c.SerialNumber.Text(16)
		t.Logf("%s serves serial %s, not after %s", e.name, e.serial, c.NotAfter.Format(time.RFC3339))
	}

	// Watch the wire until each endpoint served a renewed certificate and
	// the certificates of the start have expired.
	deadline := time.Now().Add(4 * certValidity)
	for {
		done := time.Now().After(firstExpiry.Add(5 * time.Second))
		for _, e := range eps {
			follow(t, e)
			done = done && len(e.changes) > 0
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			for _, e := range eps {
				t.Errorf("%s: %d renewals seen on the wire", e.name, len(e.changes))
			}
			t.Fatalf("not every endpoint served a renewed certificate within %s", 4*certValidity)
		}
		time.Sleep(20 * time.Millisecond) // the resolution of the measured times
	}
	for _, e := range eps {
		t.Logf("%s: %d renewals on the wire; file written → served: %v", e.name, len(e.changes), e.changes)
	}
	if n.cmd.Process.Pid != pid || strings.Contains(n.log.String(), "kedge server stopped") {
		t.Fatal("kedge restarted")
	}

	// A forced rotation of one service, live.
	before := readCertFile(t, eps[0].file)
	begin := time.Now()
	out, code := runKedge(t, n.bin, nil, "certificate", "rotate", "--data-dir", n.dataDir(), "--service", "apiserver")
	if code != 0 || !strings.Contains(out, "apiserver.crt") {
		t.Fatalf("certificate rotate = %d:\n%s", code, out)
	}
	t.Logf("kedge certificate rotate --service apiserver (%s):\n%s", time.Since(begin).Round(time.Millisecond), out)
	after := readCertFile(t, eps[0].file)
	if after.SerialNumber.Cmp(before.SerialNumber) == 0 || after.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(before.PublicKey) {
		t.Fatal("rotate did not issue a new certificate with a new key")
	}
	for eps[0].serial != after.SerialNumber.Text(16) {
		if time.Since(begin) > 30*time.Second {
			t.Fatalf("the apiserver still serves %s 30 s after rotate", eps[0].serial)
		}
		follow(t, eps[0])
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("rotated apiserver certificate served %s after the command began", time.Since(begin).Round(time.Millisecond))
	stopPolling()
	wg.Wait()
	t.Logf("API polls: %d (the kept-alive client on %d connections), failed: %d %v", polls.Load(), keptConns.Load(), failures.Load(), failed)
	if failures.Load() > 0 {
		t.Errorf("%d of %d polls failed: %v", failures.Load(), polls.Load(), failed)
	}

	// The node still works with the renewed client certificates: its lease
	// is renewed, and the apiserver reaches the kubelet.
	renew := must(n.kubectl("get", "lease", "-n", "kube-node-lease", "integration", "-o", "jsonpath={.spec.renewTime}"))
	if at, err := time.Parse(time.RFC3339Nano, renew); err != nil || time.Since(at) > 30*time.Second {
		t.Errorf("node lease renewed at %q (%v): the kubelet stopped reaching the API", renew, err)
	}
	if _, err := n.kubectl("get", "--raw", "/api/v1/nodes/integration/proxy/healthz"); err != nil {
		t.Errorf("apiserver → kubelet: %v", err)
	}

	// check: every leaf expires within 30 days here, so it lists them and exits 1.
	out, code = runKedge(t, n.bin, nil, "certificate", "check", "--data-dir", n.dataDir(), "--kubeconfig", n.kubeconfig, "-o", "json")
	if code != 1 || !strings.Contains(out, "within 30 days") {
		t.Fatalf("certificate check = %d, want 1 with the expiring certificates named:\n%s", code, out)
	}
	var listed []struct {
		File     string `json:"file"`
		User     string `json:"user"`
		CA       bool   `json:"ca"`
		DaysLeft int    `json:"daysLeft"`
	}
	if err := json.Unmarshal([]byte(out[:strings.LastIndex(out, "]")+1]), &listed); err != nil {
		t.Fatalf("check --output json: %v\n%s", err, out)
	}
	cas, embedded := 0, 0
	for _, c := range listed {
		if c.CA {
			cas++
		}
		if c.User != "" {
			embedded++
		}
	}
	if cas != 5+2 || embedded != 1 || len(listed) != 7+15+4+1 {
		t.Errorf("check listed %d certificates, %d CAs, %d embedded in kubeconfigs; want 5 CAs and the node's 2 copies, 15 server and 4 node leaves, the --write-kubeconfig's", len(listed), cas, embedded)
	}
	t.Logf("kedge certificate check listed %d certificates", len(listed))
	table, _ := runKedge(t, n.bin, nil, "certificate", "check", "--data-dir", n.dataDir())
	t.Logf("kedge certificate check:\n%s", table)

	// The metric, served by the apiserver.
	raw, err := kube.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf(`kedge_certificate_expiration_seconds{file=%q}`, eps[0].file)
	line := ""
	for l := range strings.SplitSeq(string(raw), "\n") {
		if strings.HasPrefix(l, want) {
			line = l
		}
	}
	if line == "" {
		t.Fatalf("/metrics has no %s", want)
	}
	if v, err := strconv.ParseFloat(strings.Fields(line)[1], 64); err != nil || int64(v) < after.NotAfter.Unix() {
		t.Errorf("%s: want the renewed certificate's not-after %d or later", line, after.NotAfter.Unix())
	}
	t.Logf("metric: %s", line)

	// The Events on the Node.
	events := must(n.kubectl("get", "events", "--field-selector", "reason=CertificateRenewed,involvedObject.name=integration", "-o", "jsonpath={.items[*].message}"))
	if !strings.Contains(events, "apiserver.crt") {
		t.Errorf("no CertificateRenewed Event for apiserver.crt: %q", events)
	}
	// The --write-kubeconfig copy embeds the renewed admin certificate.
	if _, err := n.kubectl("get", "nodes"); err != nil {
		t.Errorf("kubectl with --write-kubeconfig after renewals: %v", err)
	}
	n.stop(30 * time.Second)
}

// follow records a change of the certificate e serves.
func follow(t *testing.T, e *endpoint) {
	t.Helper()
	c, err := served(e)
	if err != nil {
		t.Errorf("%s: handshake: %v", e.name, err)
		return
	}
	if s := c.SerialNumber.Text(16); s != e.serial {
		seen := time.Now()
		st, err := os.Stat(e.file)
		if err != nil {
			t.Fatal(err)
		}
		if !c.NotAfter.After(time.Now()) {
			t.Errorf("%s serves an expired certificate", e.name)
		}
		e.serial = s
		e.changes = append(e.changes, seen.Sub(st.ModTime()).Round(time.Millisecond))
	}
}

// served is the certificate e presents on a new TLS handshake, verified
// against its CA.
func served(e *endpoint) (*x509.Certificate, error) {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", e.addr, e.tls.Clone())
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0], nil
}

// pairLoader loads a client certificate from its files on every handshake.
func pairLoader(cert, key string) func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		pair, err := tls.LoadX509KeyPair(cert, key)
		return &pair, err
	}
}

func pool(t *testing.T, path string) *x509.CertPool {
	t.Helper()
	p := x509.NewCertPool()
	data, err := os.ReadFile(path)
	if err != nil || !p.AppendCertsFromPEM(data) {
		t.Fatalf("CA %s: %v", path, err)
	}
	return p
}

func readCertFile(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	certs, err := certutil.ParseCertsPEM(data)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return certs[0]
}
