package metricsserver

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	apiregv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"

	"github.com/kedge-io/kedge/pkg/pki"
)

func TestOptions(t *testing.T) {
	s := New(Config{
		Kubeconfig:  "/cred/metrics-server.kubeconfig",
		BindAddress: net.ParseIP("192.0.2.10"),
		ServingCert: "/tls/metrics-server.crt", ServingKey: "/tls/metrics-server.key",
		ServerCA: "/tls/server-ca.crt",
	})
	o, err := s.options()
	if err != nil {
		t.Fatal(err)
	}
	k := o.KubeletClient
	for name, c := range map[string]bool{
		"resolution":            o.MetricResolution == Resolution,
		"kubeconfig":            o.Kubeconfig == "/cred/metrics-server.kubeconfig",
		"bind address":          o.SecureServing.BindAddress.Equal(net.ParseIP("192.0.2.10")),
		"port":                  o.SecureServing.BindPort == Port,
		"serving cert":          o.SecureServing.ServerCert.CertKey.CertFile == "/tls/metrics-server.crt",
		"serving key":           o.SecureServing.ServerCert.CertKey.KeyFile == "/tls/metrics-server.key",
		"authentication":        o.Authentication.RemoteKubeConfigFile == "/cred/metrics-server.kubeconfig",
		"authorization":         o.Authorization.RemoteKubeConfigFile == "/cred/metrics-server.kubeconfig",
		"kubelet CA":            k.KubeletCAFile == "/tls/server-ca.crt",
		"kubelet TLS verified":  !k.InsecureKubeletTLS && !k.DeprecatedCompletelyInsecureKubelet,
		"kubelet port":          k.KubeletUseNodeStatusPort,
		"kubelet address types": slices.Equal(k.KubeletPreferredAddressTypes, []string{"InternalIP", "ExternalIP", "Hostname"}),
		"no test mode":          !o.DisableAuthForTesting,
	} {
		if !c {
			t.Errorf("%s: not as kedge sets it: %+v", name, o)
		}
	}
}

func TestOptionsResolution(t *testing.T) {
	for _, c := range []struct {
		res  time.Duration
		want string
	}{
		{5 * time.Second, "10s or more"},
		{10 * time.Second, "kubelet request timeout"}, // 90% of it under upstream's 10 s
		{15 * time.Second, ""},
	} {
		_, err := New(Config{Resolution: c.res, ServingCert: "/c", ServingKey: "/k"}).options()
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("resolution %s: err = %v, want %q", c.res, err, c.want)
		}
	}
}

func TestAPIServicePatch(t *testing.T) {
	pem := "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
	raw, err := apiServicePatch([]byte(pem), "role-uid")
	if err != nil {
		t.Fatal(err)
	}
	var a apiregv1.APIService
	if err := json.Unmarshal(raw, &a); err != nil {
		t.Fatal(err)
	}
	s := a.Spec
	if a.APIVersion != "apiregistration.k8s.io/v1" || a.Kind != "APIService" || a.Name != APIServiceName ||
		s.Service == nil || s.Service.Name != ServiceName || s.Service.Namespace != "kube-system" || *s.Service.Port != 443 ||
		s.Group != "metrics.k8s.io" || s.Version != "v1beta1" || s.InsecureSkipTLSVerify || string(s.CABundle) != pem {
		t.Fatalf("patch = %s", raw)
	}
	if o := a.OwnerReferences; len(o) != 1 || o[0].Kind != "ClusterRole" || o[0].Name != OwnerClusterRole || o[0].UID != "role-uid" {
		t.Fatalf("owner = %+v", o)
	}
}

// TestHealthy: register waits for metrics-server's /healthz over TLS with
// the certificate kedge's PKI issues for it, verified as the aggregator
// does (server CA, the Service's DNS name), and for it to ask for client
// certificates of the front-proxy CA.
func TestHealthy(t *testing.T) {
	b, err := pki.Generate(pki.Config{Dir: t.TempDir(), ServiceIP: net.ParseIP("10.43.0.1")})
	if err != nil {
		t.Fatal(err)
	}
	read := func(f string) []byte {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	caPEM, proxyCAPEM, clientCAPEM := read(b.ServerCA), read(b.RequestHeaderCA), read(b.ClientCA)
	pair, err := tls.LoadX509KeyPair(b.MetricsServerCert, b.MetricsServerKey)
	if err != nil {
		t.Fatal(err)
	}
	status := http.StatusInternalServerError
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(status)
	}))
	clientCAs := x509.NewCertPool()
	clientCAs.AppendCertsFromPEM(clientCAPEM)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, ClientAuth: tls.RequestClientCert, ClientCAs: clientCAs}
	srv.StartTLS()
	defer srv.Close()
	addr := srv.Listener.Addr().String()
	if err := healthy(t.Context(), addr, caPEM, proxyCAPEM); err == nil || !strings.Contains(err.Error(), "500") {
		t.Fatalf("unhealthy server: err = %v", err)
	}
	status = http.StatusOK
	if err := healthy(t.Context(), addr, caPEM, proxyCAPEM); err == nil || !strings.Contains(err.Error(), "front-proxy CA") {
		t.Fatalf("a server that does not ask for the front-proxy CA: err = %v", err)
	}
	clientCAs.AppendCertsFromPEM(proxyCAPEM) // as metrics-server's bundle, once loaded
	if err := healthy(t.Context(), addr, caPEM, proxyCAPEM); err != nil {
		t.Fatal(err)
	}
	if err := healthy(t.Context(), addr, clientCAPEM, proxyCAPEM); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("verified against another CA: err = %v", err)
	}
}

func TestLocalAddr(t *testing.T) {
	for bind, want := range map[string]string{"0.0.0.0": "127.0.0.1:10262", "192.0.2.10": "192.0.2.10:10262", "": "127.0.0.1:10262"} {
		if got := localAddr(net.ParseIP(bind)); got != want {
			t.Errorf("localAddr(%q) = %s, want %s", bind, got, want)
		}
	}
}

// TestPortInUse: a port in use fails Start's config step with an error
// naming the address and the constant, not after the start.
func TestPortInUse(t *testing.T) {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(Port)))
	if err != nil {
		t.Skipf("port %d in use here already: %v", Port, err)
	}
	defer l.Close()
	o, err := New(Config{BindAddress: net.ParseIP("127.0.0.1"), Kubeconfig: "/nonexistent", ServingCert: "/nonexistent.crt", ServingKey: "/nonexistent.key"}).options()
	if err != nil {
		t.Fatal(err)
	}
	_, err = serverConfig(t.Context(), o)
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1:"+strconv.Itoa(Port)+" (metricsserver.Port)") || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("err = %v", err)
	}
}
