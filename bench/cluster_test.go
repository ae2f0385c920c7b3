package bench

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestPromValue(t *testing.T) {
	body := []byte(`# HELP go_memstats_heap_inuse_bytes Number of heap bytes that are in use.
# TYPE go_memstats_heap_inuse_bytes gauge
go_memstats_heap_inuse_bytes_total 1
go_memstats_heap_inuse_bytes 2.14155264e+08
apiserver_request_total{code="200"} 17
`)
	v, err := PromValue(body, "go_memstats_heap_inuse_bytes")
	if err != nil || v != 214155264 {
		t.Errorf("got %v, %v", v, err)
	}
	if _, err := PromValue(body, "go_gc_duration_seconds"); err == nil {
		t.Error("a missing metric was found")
	}
}

func TestReadToken(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "server"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "server", "token"), []byte("KEDGE1abc::secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if tok, err := readToken(dir); err != nil || tok != "KEDGE1abc::secret" {
		t.Errorf("token %q, %v", tok, err)
	}
}

func TestKedgeArgs(t *testing.T) {
	k := NewKedge(KedgeConfig{Bin: "/bin/kedge", Dir: "/w", Role: "server", Args: []string{"--disable-agent"}})
	want := []string{"server", "--data-dir", "/w/data", "--config", "/w/none.yaml", "--write-kubeconfig", "/w/kedge.yaml", "--disable-agent"}
	if got := k.Args(); !reflect.DeepEqual(got, want) {
		t.Errorf("server args %q, want %q", got, want)
	}
	a := NewKedge(KedgeConfig{Bin: "/bin/kedge", Dir: "/a", Role: "agent", AdminKC: "/w/kedge.yaml", Args: []string{"--server", "https://127.0.0.1:6443"}})
	want = []string{"agent", "--data-dir", "/a/data", "--config", "/a/none.yaml", "--server", "https://127.0.0.1:6443"}
	if got := a.Args(); !reflect.DeepEqual(got, want) || a.Kubeconfig() != "/w/kedge.yaml" {
		t.Errorf("agent args %q (kubeconfig %s), want %q", got, a.Kubeconfig(), want)
	}
	if _, err := a.PIDs(); err == nil {
		t.Error("PIDs of a setup never started succeeded")
	}
}
