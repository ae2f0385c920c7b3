package integration

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kedge-io/kedge/tests/testimage"
	"github.com/kedge-io/kedge/tests/testregistry"
)

// forgetPulls removes the kubelet's records of the images pulled under names
// containing marker, which would outlive the test in the host's kubelet root.
func forgetPulls(t *testing.T, marker string) {
	dir := "/var/lib/kubelet/image_manager/pulled"
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if raw, err := os.ReadFile(p); err == nil && strings.Contains(string(raw), marker) {
			if err := os.Remove(p); err != nil {
				t.Errorf("forget the kubelet's pull record %s: %v", p, err)
			}
		}
	}
}

func readString(path string) (string, error) {
	b, err := os.ReadFile(path)
	return string(b), err
}

// TestPrivateRegistry: pods pull images named after registries that do not
// exist through mirrors on a real registry (HTTPS with its own CA, basic
// auth), as registries.yaml configures them: with the right password, with
// a rewrite of the repository name, and with a wrong password (an Event
// naming the registry), then the password corrected and kedge restarted.
func TestPrivateRegistry(t *testing.T) {
	n := newNode(t)
	t.Cleanup(func() { n.killall() })
	const user, password = "kedge", "registry-s3cret"
	reg := testregistry.Start(t, n.dir, user, password)
	begin := time.Now()
	// Images of their own (not testimage.Name's digest): the kubelet keeps a
	// record of each image it pulled, by image ID, in its root directory
	// (/var/lib/kubelet/image_manager, across data dirs), and refuses an
	// image with such a record to pods of pull policy Never under another
	// name (KubeletEnsureSecretPulledImages) — TestNode's pods would fail.
	image := testimage.BuildWithEnv(t, "kedge.local/webapp:registry", "VARIANT=registry")
	reg.PushTarball(t, password, "kedge/webapp", "1", image)
	t.Cleanup(func() { forgetPulls(t, ".example.test/") })
	// Another image (its own digest) for the rewritten name, so that the
	// pod's status shows which name its image has.
	reg.PushTarball(t, password, "mirrored/webapp", "1", testimage.BuildWithEnv(t, "kedge.local/webapp:mirrored", "VARIANT=mirrored"))
	t.Logf("built and pushed 2 images (%d KiB each) in %s", len(image)/1024, time.Since(begin).Round(time.Millisecond))

	port := reg.Server.Listener.Addr().(*net.TCPAddr).Port
	file := filepath.Join(n.dir, "registries.yaml")
	write(t, file, fmt.Sprintf(`mirrors:
  registry.example.test:
    endpoint: ["https://127.0.0.1:%[1]d"]
  rewrite.example.test:
    endpoint: ["https://127.0.0.1:%[1]d"]
    rewrite:
      "^app/(.*)$": "mirrored/$1"
  badpass.example.test:
    endpoint: ["https://localhost:%[1]d"]
configs:
  "127.0.0.1:%[1]d":
    auth: {username: %[2]s, password: %[3]s}
    tls: {ca_file: %[4]s}
  "localhost:%[1]d":
    auth: {username: %[2]s, password: not-the-password}
    tls: {ca_file: %[4]s}
`, port, user, password, reg.CA))

	n.start("--private-registry", file)
	n.waitReady(3 * time.Minute)
	n.waitNodeReady(2 * time.Minute)
	nodeReady := time.Now()

	hosts := filepath.Join(n.dataDir(), "agent", "etc", "containerd", "certs.d", "registry.example.test", "hosts.toml")
	if st, err := os.Stat(hosts); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("%s: %v %v", hosts, st, err)
	}
	if raw, _ := os.ReadFile(hosts); strings.Contains(string(raw), password) {
		t.Fatalf("the password is in %s", hosts)
	}

	for pod, img := range map[string]string{
		"mirrored":  "registry.example.test/kedge/webapp:1",
		"rewritten": "rewrite.example.test/app/webapp:1",
		"badpass":   "badpass.example.test/kedge/webapp:1",
	} {
		if _, err := n.kubectl("run", pod, "--image="+img, "--restart=Never"); err != nil {
			t.Fatal(err)
		}
	}
	for _, pod := range []string{"mirrored", "rewritten"} {
		if out, err := n.kubectl("wait", "--for=condition=Ready", "pod/"+pod, "--timeout=120s"); err != nil {
			t.Fatalf("pod %s: %v\n%s\n%s\nregistry requests:\n%s", pod, err, out, n.describe("pod "+pod), reg.Requests())
		}
	}
	t.Logf("both pods Ready %s after the node", time.Since(nodeReady).Round(100*time.Millisecond))

	// The rewritten pull asked the registry for mirrored/webapp, and the
	// image kept the name the pod gave.
	seen := reg.Requests()
	for _, want := range []string{"0 HEAD /v2/kedge/webapp/manifests/1", "0 HEAD /v2/mirrored/webapp/manifests/1"} {
		if !strings.Contains(seen, want) {
			t.Errorf("the registry never saw %q:\n%s", want, seen)
		}
	}
	if strings.Contains(seen, "/v2/app/webapp/") {
		t.Errorf("the rewritten name was not used:\n%s", seen)
	}
	if got := must(n.kubectl("get", "pod", "rewritten", "-o", "jsonpath={.status.containerStatuses[0].image}")); got != "rewrite.example.test/app/webapp:1" {
		t.Errorf("rewritten pod's image = %q", got)
	}
	ids := must(n.kubectl("get", "pod", "mirrored", "rewritten", "-o", "jsonpath={.items[*].status.containerStatuses[0].imageID}"))
	if f := strings.Fields(ids); len(f) != 2 || f[0] == f[1] || !strings.HasPrefix(f[1], "rewrite.example.test/app/webapp@sha256:") {
		t.Errorf("image IDs of the pods = %s; want two images, the rewritten one by its own name", ids)
	}
	out, code := runKedge(t, n.bin, nil, "ctr", "images", "ls", "-q")
	if code != 0 || !strings.Contains(out, "rewrite.example.test/app/webapp:1") || !strings.Contains(out, "registry.example.test/kedge/webapp:1") || strings.Contains(out, "kedge-rewrite.invalid") {
		t.Errorf("kedge ctr images ls: exit %d\n%s", code, out)
	}

	// The wrong password: a pull error whose Event names the registry.
	events := eventually(t, 90*time.Second, func() (string, bool) {
		out, _ := n.kubectl("get", "events", "--field-selector", "involvedObject.name=badpass,reason=Failed", "-o", "jsonpath={.items[*].message}")
		return out, strings.Contains(out, "401")
	})
	for _, want := range []string{"badpass.example.test/kedge/webapp:1", fmt.Sprintf("localhost:%d", port), "401 Unauthorized"} {
		if !strings.Contains(events, want) {
			t.Errorf("the pull failure event does not name %q: %s", want, events)
		}
	}
	t.Logf("wrong password event: %s", events)
	if !strings.Contains(reg.Requests(), "401 HEAD /v2/kedge/webapp/manifests/1") {
		t.Errorf("the registry never refused a request:\n%s", reg.Requests())
	}

	// The password corrected in the file: the restarted node pulls.
	write(t, file, strings.ReplaceAll(must(readString(file)), "not-the-password", password))
	n.stop(20 * time.Second)
	n.start("--private-registry", file)
	n.waitReady(3 * time.Minute)
	if out, err := n.kubectl("wait", "--for=condition=Ready", "pod/badpass", "--timeout=120s"); err != nil {
		t.Fatalf("pod badpass after the fix and a restart: %v\n%s\n%s", err, out, n.describe("pod badpass"))
	}
	t.Logf("pod badpass Ready %s after the restart with the corrected password", time.Since(n.started).Round(100*time.Millisecond))
	n.stop(20 * time.Second)
}
