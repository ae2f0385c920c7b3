package metricsserver

import (
	"encoding/base64"
	"encoding/json"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
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

func TestCABundlePatch(t *testing.T) {
	pem := "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
	raw, err := caBundlePatch([]byte(pem))
	if err != nil {
		t.Fatal(err)
	}
	var p struct {
		APIVersion, Kind string
		Metadata         struct{ Name string }
		Spec             map[string]string
	}
	if err := json.Unmarshal(raw, &p); err != nil {
		t.Fatal(err)
	}
	if p.APIVersion != "apiregistration.k8s.io/v1" || p.Kind != "APIService" || p.Metadata.Name != APIServiceName || len(p.Spec) != 1 {
		t.Fatalf("patch = %s", raw)
	}
	if dec, err := base64.StdEncoding.DecodeString(p.Spec["caBundle"]); err != nil || string(dec) != pem {
		t.Fatalf("caBundle = %q (%v)", p.Spec["caBundle"], err)
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
