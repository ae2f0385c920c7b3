package killall

import (
	"testing"

	"github.com/moby/sys/mountinfo"
)

func TestFilterRules(t *testing.T) {
	in := `*nat
:PREROUTING ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
:CNI-HOSTPORT-DNAT - [0:0]
:DOCKER - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A PREROUTING -j DOCKER
-A KUBE-SERVICES -d 10.43.0.1/32 -j KUBE-SVC-X
-A POSTROUTING -s 10.42.0.0/16 -j FLANNEL-POSTRTG
COMMIT
`
	want := `*nat
:PREROUTING ACCEPT [0:0]
:DOCKER - [0:0]
-A PREROUTING -j DOCKER
COMMIT
`
	if got := FilterRules(in); got != want {
		t.Fatalf("got:\n%s\nwant:\n%s", got, want)
	}
}

func TestMatchers(t *testing.T) {
	if !isKedgeDaemon([]string{"/usr/local/bin/kedge", "server", "--debug"}) || isKedgeDaemon([]string{"kedge", "kubectl"}) {
		t.Fatal("isKedgeDaemon")
	}
	if !isShim([]string{"/var/lib/kedge/data/x/bin/containerd-shim-runc-v2", "-namespace", "k8s.io"}) || isShim([]string{"runc"}) {
		t.Fatal("isShim")
	}
}

func TestDescendants(t *testing.T) {
	procs := map[int]process{10: {ppid: 1}, 11: {ppid: 10}, 12: {ppid: 11}, 13: {ppid: 1}}
	got := descendants(procs, 10)
	if len(got) != 2 {
		t.Fatalf("descendants(10) = %v, want 11 and 12", got)
	}
}

func TestIsShimOf(t *testing.T) {
	addr := "/run/other/containerd/containerd.sock"
	if !IsShimOf([]string{"/x/containerd-shim-runc-v2", "-namespace", "k8s.io", "-id", "abc", "-address", addr}, addr) {
		t.Error("shim of ours not matched")
	}
	if IsShimOf([]string{"/x/containerd-shim-runc-v2", "-namespace", "k8s.io", "-address", "/run/kedge/containerd/containerd.sock"}, addr) {
		t.Error("another containerd's shim matched")
	}
	if IsShimOf([]string{"/x/containerd", "-address", addr}, addr) {
		t.Error("containerd matched")
	}
}

// the --address=... spelling
func TestIsShimOfEqualsForm(t *testing.T) {
	if !IsShimOf([]string{"containerd-shim-runc-v2", "--address=/a.sock"}, "/a.sock") {
		t.Error("--address=/a.sock not matched")
	}
}

// TestBelow: mounts under the data dirs are kedge's; the data dir itself,
// a partition of the machine, is not.
func TestBelow(t *testing.T) {
	roots := []string{"/var/lib/kedge", "/run/kedge", "/"}
	for path, want := range map[string]bool{
		"/var/lib/kedge":                      false,
		"/var/lib/kedge/agent/containerd/x":   true,
		"/var/lib/kedgeother":                 false,
		"/run/kedge/containerd/io.containerd": true,
		"/run/kedge":                          false,
	} {
		if got := below(path, roots[:2]); got != want {
			t.Errorf("below(%q) = %v, want %v", path, got, want)
		}
	}
	if !below("/anything", roots[2:]) || below("/", roots[2:]) {
		t.Error("root /")
	}
}

func TestSelfBind(t *testing.T) {
	for _, tc := range []struct {
		root, mountpoint string
		want             bool
	}{
		{"/var/lib/kubelet", "/var/lib/kubelet", true}, // the kubelet's bind onto itself
		{"/lib/kubelet", "/var/lib/kubelet", true},     // the same, /var a partition
		{"/", "/var/lib/kedge", false},                 // a partition of its own
		{"/tmp/e2e/a/data", "/var/lib/kedge", false},   // bound from elsewhere
	} {
		if got := selfBind(&mountinfo.Info{Root: tc.root, Mountpoint: tc.mountpoint}); got != tc.want {
			t.Errorf("selfBind(root %s at %s) = %v, want %v", tc.root, tc.mountpoint, got, tc.want)
		}
	}
}
