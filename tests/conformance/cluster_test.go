package conformance

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kedge-io/kedge/tests/conformance/images"
	"github.com/kedge-io/kedge/tests/e2e/harness"
)

// upstreamRegistries are the registries the nodes pull the suite's images
// from through the local registry (mirrors in registries.yaml).
var upstreamRegistries = []string{"registry.k8s.io"}

// Node paths of the mirror configuration (in /etc/kedge, the node's own).
const (
	registriesFile = "/etc/kedge/registries.yaml"
	registryCAFile = "/etc/kedge/conformance-registry-ca.crt"
)

// cluster is a server and an agent that pull from a local registry.
type cluster struct {
	c          *harness.Cluster
	server     *harness.Node
	agent      *harness.Node
	reg        *images.Registry
	kubeconfig string // on the host, to the server's node IP
	kubectl    string // a "kubectl" link to the kedge binary (multicall)
	dir        string
}

// toolsDir is where scripts/conformance-tools.sh put the tools.
func toolsDir(t *testing.T) string {
	dir := os.Getenv("KEDGE_CONFORMANCE_TOOLS")
	if dir == "" {
		dir = "../../bin/conformance"
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "e2e.test")); err != nil {
		t.Fatalf("KEDGE_CONFORMANCE_TOOLS: %v (run scripts/conformance-tools.sh, or make conformance)", err)
	}
	return dir
}

// listImages is `e2e.test --list-images`: every image the suite may use.
func listImages(t *testing.T, tools string) []string {
	out, err := exec.Command(filepath.Join(tools, "e2e.test"), "--list-images").Output()
	if err != nil {
		t.Fatalf("e2e.test --list-images: %v", err)
	}
	return strings.Fields(string(out))
}

// k8sDir is the k8s.io/kubernetes module's directory (go.mod's version).
func k8sDir(t *testing.T) string {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "k8s.io/kubernetes").Output()
	if err != nil || strings.TrimSpace(string(out)) == "" {
		t.Fatalf("go list -m k8s.io/kubernetes: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// startCluster builds and serves the stand-ins, then boots the server a and
// the agent w with the registry as their mirror and waits for both Ready.
func startCluster(t *testing.T, tools, out string) *cluster {
	c := harness.NewCluster(t)
	cl := &cluster{c: c, dir: out}
	var set []images.Image
	c.Step("build the stand-in images", func() {
		b := &images.Builder{Tools: tools, Kubernetes: k8sDir(t), PauseTar: "../../pkg/embedded/assets/images/pause.tar"}
		var skipped []string
		var err error
		set, skipped, err = b.Build(upstreamRegistries[0], listImages(t, tools))
		if err != nil {
			t.Fatal(err)
		}
		var refs []string
		for _, img := range set {
			refs = append(refs, img.Ref)
		}
		t.Logf("stand-ins (%d): %s", len(set), strings.Join(refs, " "))
		t.Logf("not built (no [Conformance] spec pulls them): %s", strings.Join(skipped, " "))
	})
	c.Step("serve them from a registry on the bridge", func() {
		reg, err := images.Serve(net.JoinHostPort(harness.BridgeIP().String(), "0"), t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if m := reg.Misses(); len(m) > 0 {
				t.Logf("images the nodes asked the registry for and it does not have: %s", strings.Join(m, " "))
			}
			reg.Close()
		})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		if err := reg.Push(ctx, set); err != nil {
			t.Fatal(err)
		}
		cl.reg = reg
	})
	regFlag := "--private-registry=" + registriesFile
	c.Step("server a Ready", func() {
		cl.server = c.AddNode("a", "server", regFlag)
		cl.configureMirror(t, cl.server)
		cl.server.Start()
		cl.server.WaitReady(5 * time.Minute)
	})
	token, err := os.ReadFile(filepath.Join(cl.server.DataDir(), "server", "agent-token"))
	if err != nil {
		t.Fatal(err)
	}
	c.Step("agent w joins, Ready", func() {
		cl.agent = c.AddNode("w", "agent", "--server", "https://"+cl.server.IP().String()+":6443",
			"--token", strings.TrimSpace(string(token)), regFlag)
		cl.configureMirror(t, cl.agent)
		cl.agent.Start()
		// An agent has no admin kubeconfig: the server says when it is Ready.
		c.Eventually(5*time.Minute, "node w Ready", func() error {
			if !cl.agent.LoggedReady() {
				return fmt.Errorf("w has not logged ready yet")
			}
			s, err := cl.server.Kubectl("get", "node", "w", "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
			if s != "True" {
				return fmt.Errorf("Ready=%q, %v", s, err)
			}
			return nil
		})
	})
	cl.kubeconfig = filepath.Join(out, "kubeconfig")
	raw, err := os.ReadFile(filepath.Join(cl.server.Dir(), "etc-kedge", "kedge.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	kc := strings.ReplaceAll(string(raw), "https://127.0.0.1:6443", "https://"+cl.server.IP().String()+":6443")
	if kc == string(raw) {
		t.Fatalf("admin kubeconfig: no server https://127.0.0.1:6443 to point at %s", cl.server.IP())
	}
	if err := os.WriteFile(cl.kubeconfig, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	cl.kubectl = filepath.Join(out, "kubectl")
	os.Remove(cl.kubectl)
	if err := os.Symlink(c.Bin(), cl.kubectl); err != nil {
		t.Fatal(err)
	}
	return cl
}

// configureMirror writes the node's registries.yaml: every upstream
// registry mirrored by the local one, trusted through its CA.
func (cl *cluster) configureMirror(t *testing.T, n *harness.Node) {
	etc := filepath.Join(n.Dir(), "etc-kedge")
	ca, err := os.ReadFile(cl.reg.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(etc, filepath.Base(registryCAFile)), ca, 0o644); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString("mirrors:\n")
	for _, r := range upstreamRegistries {
		fmt.Fprintf(&b, "  %s:\n    endpoint: [\"https://%s\"]\n", r, cl.reg.Addr)
	}
	fmt.Fprintf(&b, "configs:\n  %q:\n    tls:\n      ca_file: %s\n", cl.reg.Addr, registryCAFile)
	if err := os.WriteFile(filepath.Join(etc, filepath.Base(registriesFile)), []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
}
