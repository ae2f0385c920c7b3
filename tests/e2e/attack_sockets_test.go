package e2e

import (
	"bytes"
	"cmp"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/kedge-io/kedge/tests/e2e/harness"
)

// socket is one line of `ss -H -tulpn` in a node.
type socket struct {
	proto   string // tcp, udp
	host    string // as ss prints it, without brackets: 127.0.0.1, 172.31.250.11, *, 0.0.0.0, ::
	port    int
	process string // "kedge", or "kernel" for a socket no process holds (VXLAN)
}

// scope is who can reach a socket.
type scope string

const (
	loopback scope = "loopback"
	nodeIP   scope = "node IP"
	anyAddr  scope = "any address"
)

func (s socket) scope() scope {
	switch ip := net.ParseIP(s.host); {
	case s.host == "*" || (ip != nil && ip.IsUnspecified()):
		return anyAddr
	case ip != nil && ip.IsLoopback():
		return loopback
	}
	return nodeIP
}

func (s socket) addr() string { return net.JoinHostPort(s.host, strconv.Itoa(s.port)) }

// listSockets lists the node's listening TCP and bound UDP sockets.
func listSockets(n *harness.Node) ([]socket, error) {
	out, err := n.Exec("ss", "-H", "-tulpn")
	if err != nil {
		return nil, err
	}
	var list []socket
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 6 {
			continue
		}
		i := strings.LastIndex(f[4], ":")
		port, err := strconv.Atoi(f[4][i+1:])
		if i < 0 || err != nil {
			return nil, fmt.Errorf("ss line %q", line)
		}
		host := strings.Trim(f[4][:i], "[]")
		host, _, _ = strings.Cut(host, "%") // 127.0.0.53%lo
		s := socket{proto: f[0], host: host, port: port, process: "kernel"}
		if len(f) > 6 {
			if _, rest, ok := strings.Cut(f[6], `(("`); ok {
				s.process, _, _ = strings.Cut(rest, `"`)
			}
			// ss names the process by its comm: the binary's file name,
			// at most 15 bytes, whatever $KEDGE_BIN is called.
			if comm := filepath.Base(os.Getenv("KEDGE_BIN")); s.process == comm[:min(len(comm), 15)] {
				s.process = "kedge"
			}
		}
		list = append(list, s)
	}
	return list, nil
}

// expected is a socket kedge is meant to have, and how to probe it.
type expected struct {
	proto  string
	port   int // 0: the one loopback port chosen at random (containerd's streaming server)
	scope  scope
	server bool // on servers only
	agent  bool // on agents only
	what   string
	probe  func(cl *attackCluster, n *harness.Node, s socket) (how string, err error)
}

// expectedSockets is every socket a server or an agent listens on.
var expectedSockets = []expected{
	{proto: "tcp", port: 6443, scope: anyAddr, server: true, what: "apiserver + supervisor", probe: (*attackCluster).probeAPIServer},
	{proto: "tcp", port: 2379, scope: nodeIP, server: true, what: "etcd client", probe: (*attackCluster).probeEtcdClient},
	{proto: "tcp", port: 2379, scope: loopback, server: true, what: "etcd client", probe: insideNoClientCert("/var/lib/kedge/server/tls/etcd/server-ca.crt")},
	{proto: "tcp", port: 2380, scope: nodeIP, server: true, what: "etcd peer", probe: (*attackCluster).probeEtcdPeer},
	{proto: "tcp", port: 2381, scope: loopback, server: true, what: "etcd metrics + health", probe: insideMetrics("/health", `"health":"true"`)},
	{proto: "tcp", port: 10262, scope: anyAddr, server: true, what: "metrics-server (the aggregator dials it)", probe: probeMetricsServer},
	{proto: "tcp", port: 10257, scope: loopback, server: true, what: "controller-manager", probe: insideSecure},
	{proto: "tcp", port: 10259, scope: loopback, server: true, what: "scheduler", probe: insideSecure},
	{proto: "tcp", port: 6444, scope: loopback, agent: true, what: "apiserver load balancer", probe: inside("https", "/api", 401, "")},
	{proto: "tcp", port: 6445, scope: loopback, agent: true, what: "kubelet API cache", probe: insideNoClientCert("/var/lib/kedge/agent/apicache/serving-ca.crt")},
	{proto: "tcp", port: 10250, scope: anyAddr, what: "kubelet API", probe: (*attackCluster).probeKubelet},
	{proto: "tcp", port: 10248, scope: loopback, what: "kubelet healthz", probe: inside("http", "/healthz", 200, "ok")},
	{proto: "tcp", port: 10249, scope: loopback, what: "kube-proxy metrics", probe: insideMetrics("/healthz", "ok")},
	{proto: "tcp", port: 10256, scope: loopback, what: "kube-proxy healthz", probe: inside("http", "/healthz", 0, "lastUpdated")},
	{proto: "tcp", port: 8180, scope: loopback, what: "CoreDNS health", probe: inside("http", "/health", 200, "OK")},
	{proto: "tcp", port: 8181, scope: loopback, what: "CoreDNS ready", probe: inside("http", "/ready", 200, "OK")},
	{proto: "tcp", port: 53, scope: nodeIP, what: "CoreDNS", probe: probeDNS},
	{proto: "udp", port: 53, scope: nodeIP, what: "CoreDNS", probe: probeDNS},
	{proto: "udp", port: 8472, scope: anyAddr, what: "VXLAN (kernel, flannel.1)", probe: probeVXLAN},
	{proto: "tcp", port: 0, scope: loopback, what: "containerd CRI streaming", probe: inside("http", "/", 404, "404: Page Not Found")},
}

// probeSockets lists n's sockets, matches each to an expected one and
// probes it; unexpected and missing sockets are failures.
func (cl *attackCluster) probeSockets(n *harness.Node) checks {
	isServer := n == cl.a
	list, err := listSockets(n)
	if err != nil {
		cl.t.Fatal(err)
	}
	rank := map[scope]int{anyAddr: 0, nodeIP: 1, loopback: 2}
	slices.SortStableFunc(list, func(x, y socket) int {
		return cmp.Or(cmp.Compare(rank[x.scope()], rank[y.scope()]), cmp.Compare(x.port, y.port), strings.Compare(x.proto, y.proto))
	})
	seen := map[int]bool{} // index in expectedSockets
	var out checks
	for _, s := range list {
		r := check{node: n.Name(), proto: s.proto, addr: s.addr(), process: s.process}
		i := matchSocket(s, isServer, seen)
		if i < 0 {
			r.what, r.result = "UNEXPECTED", fmt.Sprintf("FAIL: nothing kedge should listen on (%s)", s.scope())
			out = append(out, r)
			continue
		}
		e := expectedSockets[i]
		seen[i] = true
		r.what = e.what
		if s.scope() != e.scope {
			r.result = fmt.Sprintf("FAIL: bound to %s, want %s", s.scope(), e.scope)
			out = append(out, r)
			continue
		}
		how, err := e.probe(cl, n, s)
		if err == nil && e.scope == loopback {
			how, err = cl.unreachable(n, s, list, how)
		}
		r.how, r.result = how, outcome(err)
		out = append(out, r)
	}
	for i, e := range expectedSockets {
		if !seen[i] && ((e.server && isServer) || (e.agent && !isServer) || (!e.server && !e.agent)) {
			port := strconv.Itoa(e.port)
			if e.port == 0 {
				port = "<random>"
			}
			out = append(out, check{node: n.Name(), proto: e.proto, addr: port, what: e.what, result: "FAIL: not listening"})
		}
	}
	return out
}

// matchSocket returns the index of the expected socket s is, or -1.
func matchSocket(s socket, isServer bool, seen map[int]bool) int {
	candidate := -1
	for i, e := range expectedSockets {
		if e.proto != s.proto || (e.server && !isServer) || (e.agent && isServer) || seen[i] {
			continue
		}
		switch {
		case e.port == s.port && e.scope == s.scope():
			return i
		case e.port == s.port && candidate < 0:
			candidate = i // the right port, the wrong address: reported as such
		}
	}
	if candidate >= 0 {
		return candidate
	}
	for i, e := range expectedSockets {
		if e.port == 0 && e.proto == s.proto && !seen[i] && s.scope() == loopback && s.process == "kedge" && s.port >= 32768 {
			return i
		}
	}
	return -1
}

// unreachable checks, for a loopback socket, that its port on the node IP
// refuses a connection from outside (unless another socket serves it there).
func (cl *attackCluster) unreachable(n *harness.Node, s socket, all []socket, how string) (string, error) {
	for _, o := range all {
		if o.proto == s.proto && o.port == s.port && o.scope() != loopback {
			return how, nil // 2379: the node IP's own listener is probed on its own
		}
	}
	addr := net.JoinHostPort(n.IP().String(), strconv.Itoa(s.port))
	conn, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err == nil {
		conn.Close()
		return how, fmt.Errorf("%s accepts connections from outside", addr)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return how, fmt.Errorf("dial %s from outside: %v, want connection refused", addr, err)
	}
	return how + "; node IP: refused", nil
}

// httpsClient trusts caFile and presents cert/key when given.
func httpsClient(caFile, cert, key string) (*http.Client, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	cfg := &tls.Config{RootCAs: pool}
	if cert != "" {
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}, nil
}

// anonymousPaths are apiserver paths an anonymous client must not get.
var anonymousPaths = []string{"/", "/api", "/apis", "/version", "/healthz", "/livez", "/readyz", "/metrics",
	"/openapi/v2", "/openapi/v3", "/.well-known/openid-configuration", "/openid/v1/jwks", "/logs/",
	"/debug/pprof/", "/api/v1/secrets", "/api/v1/namespaces/kube-system/configmaps", "/apis/discovery.k8s.io/v1/endpointslices"}

// probeAPIServer: anonymous requests get 401 but /cacerts (the CA, the
// bytes the token pins) and /ping; the join endpoints want the secret.
func (cl *attackCluster) probeAPIServer(n *harness.Node, s socket) (string, error) {
	client, err := httpsClient(cl.serverTLS("server-ca.crt"), "", "")
	if err != nil {
		return "", err
	}
	base := "https://" + net.JoinHostPort(n.IP().String(), strconv.Itoa(s.port))
	do := func(method, path string) (int, []byte, error) {
		req, _ := http.NewRequest(method, base+path, strings.NewReader("{}"))
		resp, err := client.Do(req)
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return resp.StatusCode, body, nil
	}
	for _, p := range anonymousPaths {
		code, body, err := do(http.MethodGet, p)
		if err != nil {
			return "", err
		}
		if code != http.StatusUnauthorized && code != http.StatusForbidden {
			return "", fmt.Errorf("anonymous GET %s: %d %.200s", p, code, body)
		}
	}
	for _, p := range []string{"/v1-kedge/node", "/v1-kedge/server"} {
		if code, body, err := do(http.MethodPost, p); err != nil || code != http.StatusUnauthorized {
			return "", fmt.Errorf("POST %s without the secret: %d %.200s %v", p, code, body, err)
		}
	}
	ca, _ := os.ReadFile(cl.serverTLS("server-ca.crt"))
	if code, body, err := do(http.MethodGet, "/cacerts"); err != nil || code != http.StatusOK || !bytes.Equal(body, ca) {
		return "", fmt.Errorf("GET /cacerts: %d, %d bytes, %v; want the CA bundle", code, len(body), err)
	}
	if code, body, err := do(http.MethodGet, "/ping"); err != nil || code != http.StatusOK || string(body) != "pong" {
		return "", fmt.Errorf("GET /ping: %d %q %v", code, body, err)
	}
	return fmt.Sprintf("anonymous GET of %d API paths: 401; /cacerts: the CA only; /ping: pong; POST /v1-kedge/{node,server} without the secret: 401", len(anonymousPaths)), nil
}

// tlsAlert dials addr with TLS, sends a request and reports the server's
// TLS alert ("" when there is none): a server that wants a client
// certificate it trusts refuses after the handshake, on the first read.
func tlsAlert(addr, caFile, cert, key string) (string, error) {
	client, err := httpsClient(caFile, cert, key)
	if err != nil {
		return "", err
	}
	cfg := client.Transport.(*http.Transport).TLSClientConfig
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 3 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		if strings.Contains(err.Error(), "remote error: tls:") {
			return err.Error(), nil
		}
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
	_, _ = io.WriteString(conn, "GET /version HTTP/1.1\r\nHost: etcd\r\n\r\n")
	_, err = conn.Read(make([]byte, 512))
	if err != nil && strings.Contains(err.Error(), "remote error: tls:") {
		return err.Error(), nil
	}
	return "", nil
}

// probeEtcd: no client certificate and a node's (another CA's) are refused
// in TLS; etcd's own certificate, the control, is not.
func (cl *attackCluster) probeEtcd(n *harness.Node, s socket, ca, cert, key string) (string, error) {
	addr := net.JoinHostPort(n.IP().String(), strconv.Itoa(s.port))
	for _, c := range []struct{ what, cert, key string }{
		{"no client certificate", "", ""},
		{"the agent's kubelet certificate", cl.agentTLS("kubelet-client.crt"), cl.agentTLS("kubelet-client.key")},
	} {
		alert, err := tlsAlert(addr, ca, c.cert, c.key)
		if err != nil {
			return "", fmt.Errorf("%s: %v", c.what, err)
		}
		if alert == "" {
			return "", fmt.Errorf("%s: accepted", c.what)
		}
	}
	if alert, err := tlsAlert(addr, ca, cert, key); err != nil || alert != "" {
		return "", fmt.Errorf("control with etcd's own certificate: %q %v", alert, err)
	}
	return "TLS refused without a client certificate and with the agent's (another CA); etcd's own accepted (control)", nil
}

func (cl *attackCluster) probeEtcdClient(n *harness.Node, s socket) (string, error) {
	return cl.probeEtcd(n, s, cl.serverTLS("etcd/server-ca.crt"), cl.serverTLS("etcd/client.crt"), cl.serverTLS("etcd/client.key"))
}

func (cl *attackCluster) probeEtcdPeer(n *harness.Node, s socket) (string, error) {
	return cl.probeEtcd(n, s, cl.serverTLS("etcd/peer-ca.crt"), cl.serverTLS("etcd/peer.crt"), cl.serverTLS("etcd/peer.key"))
}

// kubeletPaths are kubelet API paths an anonymous client must not get.
var kubeletPaths = []string{"/pods", "/runningpods/", "/healthz", "/metrics", "/metrics/cadvisor", "/configz",
	"/stats/summary", "/logs/", "/exec/kube-system/x/c?command=id", "/run/kube-system/x/c", "/checkpoint/kube-system/x/c"}

// probeKubelet: anonymous requests get 401; the agent's own kubelet
// certificate, which the kubelet authenticates, is not authorized (403).
func (cl *attackCluster) probeKubelet(n *harness.Node, s socket) (string, error) {
	base := "https://" + net.JoinHostPort(n.IP().String(), strconv.Itoa(s.port))
	anon := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	for _, p := range kubeletPaths {
		method := http.MethodGet
		if strings.HasPrefix(p, "/run/") || strings.HasPrefix(p, "/checkpoint/") {
			method = http.MethodPost
		}
		req, _ := http.NewRequest(method, base+p, nil)
		resp, err := anon.Do(req)
		if err != nil {
			return "", err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			return "", fmt.Errorf("anonymous %s %s: %d, want 401", method, p, resp.StatusCode)
		}
	}
	agent, err := httpsClient(cl.agentTLS("server-ca.crt"), cl.agentTLS("kubelet-client.crt"), cl.agentTLS("kubelet-client.key"))
	if err != nil {
		return "", err
	}
	resp, err := agent.Get(base + "/pods")
	if err != nil {
		return "", fmt.Errorf("with the agent's kubelet certificate: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		return "", fmt.Errorf("GET /pods with the agent's kubelet certificate: %d, want 403", resp.StatusCode)
	}
	return fmt.Sprintf("anonymous: 401 on %d paths (pods, exec, run, logs, metrics, configz …); system:node:%s: 403", len(kubeletPaths), cl.w.Name()), nil
}

// probeDNS: the socket answers a DNS query for the kubernetes Service
// with its ClusterIP, and an HTTP request with no HTTP.
func probeDNS(cl *attackCluster, n *harness.Node, s socket) (string, error) {
	addr := net.JoinHostPort(n.IP().String(), strconv.Itoa(s.port))
	ip, err := dnsQuery(s.proto, addr, "kubernetes.default.svc.cluster.local.")
	if err != nil {
		return "", err
	}
	if ip != "10.43.0.1" {
		return "", fmt.Errorf("kubernetes.default.svc.cluster.local is %s, want 10.43.0.1", ip)
	}
	how := "DNS: kubernetes.default.svc.cluster.local A 10.43.0.1"
	if s.proto == "tcp" {
		conn, err := net.DialTimeout("tcp", addr, 3*time.Second)
		if err != nil {
			return "", err
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
		_, _ = io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		got, _ := io.ReadAll(io.LimitReader(conn, 4096))
		if bytes.Contains(got, []byte("HTTP/")) {
			return "", fmt.Errorf("HTTP request answered: %.100q", got)
		}
		how += "; an HTTP request: no HTTP answer"
	}
	return how, nil
}

// dnsQuery asks server (host:port) for name's A record over udp or tcp.
func dnsQuery(proto, server, name string) (string, error) {
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 0x6b65, RecursionDesired: true})
	b.EnableCompression()
	if err := b.StartQuestions(); err != nil {
		return "", err
	}
	if err := b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(name), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}); err != nil {
		return "", err
	}
	q, err := b.Finish()
	if err != nil {
		return "", err
	}
	conn, err := net.DialTimeout(proto, server, 3*time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	answer := make([]byte, 4096)
	var k int
	if proto == "tcp" {
		if _, err := conn.Write(binary.BigEndian.AppendUint16(nil, uint16(len(q)))); err != nil {
			return "", err
		}
		if _, err := conn.Write(q); err != nil {
			return "", err
		}
		var size [2]byte
		if _, err := io.ReadFull(conn, size[:]); err != nil {
			return "", fmt.Errorf("dns over tcp: %w", err)
		}
		answer = make([]byte, binary.BigEndian.Uint16(size[:]))
		if k, err = io.ReadFull(conn, answer); err != nil {
			return "", err
		}
	} else {
		if _, err := conn.Write(q); err != nil {
			return "", err
		}
		if k, err = conn.Read(answer); err != nil {
			return "", fmt.Errorf("dns over udp: %w", err)
		}
	}
	var m dnsmessage.Message
	if err := m.Unpack(answer[:k]); err != nil {
		return "", err
	}
	if m.ID != 0x6b65 || !m.Response || m.RCode != dnsmessage.RCodeSuccess {
		return "", fmt.Errorf("dns answer: id %x response %v rcode %v", m.ID, m.Response, m.RCode)
	}
	for _, a := range m.Answers {
		if r, ok := a.Body.(*dnsmessage.AResource); ok {
			return net.IP(r.A[:]).String(), nil
		}
	}
	return "", fmt.Errorf("dns answer without an A record: %v", m.Answers)
}

// probeVXLAN: the UDP socket no process holds is the kernel's VXLAN port,
// flannel's device. VXLAN has no authentication: anyone on the nodes'
// network can send packets into the pod network.
func probeVXLAN(_ *attackCluster, n *harness.Node, _ socket) (string, error) {
	out, err := n.Exec("ip", "-d", "link", "show", "flannel.1")
	if err != nil {
		return "", err
	}
	if !strings.Contains(out, "vxlan id") || !strings.Contains(out, "dstport 8472") {
		return "", fmt.Errorf("flannel.1 is not VXLAN on 8472: %s", out)
	}
	return "the kernel's VXLAN port of flannel.1 (unauthenticated by design)", nil
}

// inside returns a probe that requests scheme://127.0.0.1:<port><path>
// inside the node, as a local process without credentials would, and wants
// the status code (0: any) and a body containing want.
func inside(scheme, path string, code int, want string) func(*attackCluster, *harness.Node, socket) (string, error) {
	return func(_ *attackCluster, n *harness.Node, s socket) (string, error) {
		got, body, err := curlInside(n, scheme+"://"+s.addr()+path)
		if err != nil {
			return "", err
		}
		if (code != 0 && got != code) || !strings.Contains(body, want) {
			return "", fmt.Errorf("GET %s: %d %.200q, want %d with %q", path, got, body, code, want)
		}
		return fmt.Sprintf("inside, no credentials: GET %s %d", path, got), nil
	}
}

// insideMetrics returns a probe for a plain HTTP metrics endpoint on
// loopback: /metrics and the health path answer anyone on the node (as
// upstream's do), /debug/pprof does not exist.
func insideMetrics(health, want string) func(*attackCluster, *harness.Node, socket) (string, error) {
	return func(_ *attackCluster, n *harness.Node, s socket) (string, error) {
		for _, c := range []struct {
			path string
			code int
			want string
		}{{health, 200, want}, {"/metrics", 200, "# TYPE"}, {"/debug/pprof/", 404, ""}} {
			got, body, err := curlInside(n, "http://"+s.addr()+c.path)
			if err != nil {
				return "", err
			}
			if got != c.code || !strings.Contains(body, c.want) {
				return "", fmt.Errorf("GET %s: %d %.200q, want %d with %q", c.path, got, body, c.code, c.want)
			}
		}
		return fmt.Sprintf("inside, no credentials: %s and /metrics 200, /debug/pprof 404", health), nil
	}
}

// insideSecure probes a control-plane component's secure port: /healthz
// answers anyone, everything else (/metrics) wants an authorized client.
func insideSecure(_ *attackCluster, n *harness.Node, s socket) (string, error) {
	for _, c := range []struct {
		path string
		code int
	}{{"/healthz", 200}, {"/metrics", 403}, {"/configz", 403}, {"/debug/pprof/", 403}} {
		got, body, err := curlInside(n, "https://"+s.addr()+c.path)
		if err != nil {
			return "", err
		}
		if got != c.code {
			return "", fmt.Errorf("GET %s: %d %.200q, want %d", c.path, got, body, c.code)
		}
	}
	return "inside, no credentials: /healthz 200; /metrics, /configz, /debug/pprof 403", nil
}

// insideNoClientCert returns a probe that connects with TLS inside the
// node, trusting ca, without a client certificate, and wants a refusal.
func insideNoClientCert(ca string) func(*attackCluster, *harness.Node, socket) (string, error) {
	return func(_ *attackCluster, n *harness.Node, s socket) (string, error) {
		out, err := n.Exec("curl", "-sS", "-m", "5", "--cacert", ca, "https://"+s.addr()+"/version")
		if err == nil {
			return "", fmt.Errorf("GET /version without a client certificate: %.200s", out)
		}
		return "inside, TLS without a client certificate: refused", nil
	}
}

// curlInside fetches url inside the node (TLS unverified: the check is
// about authorization) and returns the status code and the body.
func curlInside(n *harness.Node, url string) (int, string, error) {
	out, err := n.Exec("curl", "-sk", "-m", "5", "-w", "\n%{http_code}", url)
	if err != nil {
		return 0, out, err
	}
	body, last := "", out
	if i := strings.LastIndex(out, "\n"); i >= 0 {
		body, last = out[:i], out[i+1:]
	}
	code, err := strconv.Atoi(last)
	if err != nil {
		return 0, out, fmt.Errorf("curl %s: %q", url, out)
	}
	return code, body, nil
}

// probeMetricsServer: an anonymous client from the network gets no metrics
// (401 or 403 from metrics-server's delegated authentication and
// authorization; only its health paths answer, as upstream's).
func probeMetricsServer(_ *attackCluster, n *harness.Node, s socket) (string, error) {
	base := "https://" + net.JoinHostPort(n.IP().String(), strconv.Itoa(s.port))
	anon := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	var codes []string
	for _, p := range []string{"/apis/metrics.k8s.io/v1beta1/nodes", "/apis/metrics.k8s.io/v1beta1/pods", "/metrics"} {
		resp, err := anon.Get(base + p)
		if err != nil {
			return "", err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != http.StatusForbidden {
			return "", fmt.Errorf("anonymous GET %s: %d, want 401 or 403", p, resp.StatusCode)
		}
		codes = append(codes, fmt.Sprintf("%s %d", p, resp.StatusCode))
	}
	return "anonymous: " + strings.Join(codes, ", "), nil
}
