package kubelet

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	certutil "k8s.io/client-go/util/cert"
)

// testConfig returns a Config whose files exist in a temp dir, with free
// ports for the kubelet API and healthz, and a runtime socket path that
// nothing serves yet.
func testConfig(t *testing.T) Config {
	t.Helper()
	dir := t.TempDir()
	cert, key, err := certutil.GenerateSelfSignedCertKey("node1", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		"ca.crt":  cert,
		"tls.crt": cert,
		"tls.key": key,
		// An apiserver that is never reached: Run fails before it dials.
		"kubelet.kubeconfig": []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`),
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), body, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg := baseConfig()
	cfg.RootDir = filepath.Join(dir, "kubelet")
	cfg.Kubeconfig = filepath.Join(dir, "kubelet.kubeconfig")
	cfg.ClientCAFile = filepath.Join(dir, "ca.crt")
	cfg.ServingCert = filepath.Join(dir, "tls.crt")
	cfg.ServingKey = filepath.Join(dir, "tls.key")
	cfg.ContainerRuntimeEndpoint = "unix://" + filepath.Join(dir, "containerd.sock")
	cfg.ExtraArgs = []string{"port=" + freePort(t), "healthz-port=" + freePort(t)}
	return cfg
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

// TestStartWithoutRuntimeSocket: Start fails with an error naming the
// endpoint, and nothing runs.
func TestStartWithoutRuntimeSocket(t *testing.T) {
	cfg := testConfig(t)
	k := New(cfg)
	err := k.Start(context.Background())
	if err == nil {
		_ = k.Stop(context.Background())
		t.Fatal("Start succeeded without a runtime socket")
	}
	if !strings.Contains(err.Error(), cfg.ContainerRuntimeEndpoint) {
		t.Errorf("error %q does not name the endpoint", err)
	}
	if err := k.Stop(context.Background()); err != nil {
		t.Errorf("Stop after a failed Start: %v", err)
	}
}

// TestStartPortTaken: a taken kubelet port fails Start, instead of the
// kubelet's os.Exit when it cannot listen.
func TestStartPortTaken(t *testing.T) {
	cfg := testConfig(t)
	listenUnix(t, strings.TrimPrefix(cfg.ContainerRuntimeEndpoint, "unix://"))
	l, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	cfg.ExtraArgs = append(cfg.ExtraArgs, "port="+port)
	err = New(cfg).Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), ":"+port) {
		t.Fatalf("Start with port %s taken: err = %v", port, err)
	}
}

// TestRunFailsCleanly: with a runtime socket that nothing serves, app.Run
// returns an error (no panic, no os.Exit), Err reports it and Stop returns.
func TestRunFailsCleanly(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the kubelet's setup needs root")
	}
	cfg := testConfig(t)
	sock := strings.TrimPrefix(cfg.ContainerRuntimeEndpoint, "unix://")
	l := listenUnix(t, sock)
	l.SetUnlinkOnClose(false)
	l.Close() // the socket file stays; connecting is refused

	k := New(cfg)
	if err := k.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := k.Stop(context.Background()); err != nil {
			t.Errorf("Stop: %v", err)
		}
	}()
	select {
	case err := <-k.Err():
		if !strings.Contains(err.Error(), sock) {
			t.Errorf("error %q does not name the socket", err)
		}
		t.Logf("run error: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("the kubelet neither failed nor ran")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := k.Ready(ctx); err == nil {
		t.Error("Ready succeeded for a kubelet that failed")
	}
}

func listenUnix(t *testing.T, path string) *net.UnixListener {
	t.Helper()
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}
