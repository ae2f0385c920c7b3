// Package image tests the kedge node image (package/Dockerfile) with
// Debian's docker.io engine: it builds the image, runs a server container
// and an agent container that joins it on one docker network, runs a pod on
// each node and checks the traffic between them, creates the server's
// container again on its volume, and removes everything. Run with `make image-test` (root; it
// holds /tmp/kedge-e2e.lock while its dockerd runs).
package image

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kedge-io/kedge/tests/testimage"
)

// NodeFlags are the docker run flags a kedge node container needs without
// --privileged (docs/node-image.md says why each one is there).
var NodeFlags = []string{
	"--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE",
	"--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
	"--security-opt", "systempaths=unconfined",
	"--cgroupns", "private",
	"--device", "/dev/kmsg",
	"--tmpfs", "/run",
	"--init",
}

// The test's docker network and the nodes' addresses on it.
const (
	Subnet   = "172.30.251.0/24"
	ServerIP = "172.30.251.10"
	AgentIP  = "172.30.251.11"
)

// imageName is what the test tags its image.
const imageName = "kedge-node:test"

func TestNodeImage(t *testing.T) {
	bin := os.Getenv("KEDGE_BIN")
	if bin == "" {
		t.Skip("KEDGE_BIN is not set (make image-test sets it)")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root (dockerd)")
	}
	for _, p := range []string{"dockerd", "docker"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("%s not found (Debian: apt-get install docker.io)", p)
		}
	}
	forward, ipForward := hostNetState(t)
	base, err := ensureBase()
	if err != nil {
		t.Fatal(err)
	}
	webapp := testimage.Build(t)

	d := startDaemon(t)
	if err := d.importBase(base); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	build := exec.Command("scripts/image.sh")
	build.Dir = repoRoot(t)
	build.Env = append(d.env(), "KEDGE_BIN="+bin, "IMAGE=kedge-node", "IMAGE_TAG=test",
		"IMAGE_BASE="+BaseImage, "IMAGE_BUILD_FLAGS=--network host")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("scripts/image.sh: %v\n%s", err, tail(string(out), 30))
	}
	size := d.must("image", "inspect", "-f", "{{.Size}}", imageName)
	t.Logf("built %s in %s: %s bytes", imageName, time.Since(began).Round(time.Second), size)
	checkContents(t, d)

	// Fixed addresses: the server keeps its address when its container is
	// created again, as a host keeps its IP over a reinstall.
	network := filepath.Base(d.dir)
	d.must("network", "create", "--subnet", Subnet, network)
	addr := map[string]string{"ks": ServerIP, "ka": AgentIP}
	data := map[string]string{}
	for _, n := range []string{"ks", "ka"} {
		data[n] = filepath.Join(d.dir, n)
		testimage.Drop(t, data[n], webapp)
	}

	began = time.Now()
	runNode(t, d, network, "ks", addr["ks"], data["ks"], nil, "server")
	waitReady(t, d, "ks", "ks", 3*time.Minute)
	t.Logf("server container: node ks Ready %s after docker run", time.Since(began).Round(100*time.Millisecond))
	token, err := os.ReadFile(filepath.Join(data["ks"], "server", "agent-token"))
	if err != nil {
		t.Fatal(err)
	}

	began = time.Now()
	// The token reaches the agent through the docker client's environment
	// (-e KEDGE_TOKEN with no value), never through an argv.
	runNode(t, d, network, "ka", addr["ka"], data["ka"],
		[]string{"KEDGE_URL=https://" + addr["ks"] + ":6443", "KEDGE_TOKEN=" + strings.TrimSpace(string(token))}, "agent")
	waitReady(t, d, "ks", "ka", 3*time.Minute)
	t.Logf("agent container: node ka Ready %s after docker run", time.Since(began).Round(100*time.Millisecond))

	kubectl := func(args ...string) (string, error) {
		return d.docker(append([]string{"exec", "ks", "kubectl"}, args...)...)
	}
	for _, n := range []string{"ks", "ka"} {
		overrides := fmt.Sprintf(`{"spec":{"nodeName":%q}}`, n)
		if _, err := kubectl("run", "web-"+n, "--image="+testimage.Name, "--image-pull-policy=Never",
			"--port=8080", "--overrides="+overrides); err != nil {
			t.Fatal(err)
		}
	}
	waitPods(t, kubectl, 3*time.Minute, "web-ks", "web-ka")
	ips := map[string]string{}
	for _, n := range []string{"ks", "ka"} {
		ips[n], _ = kubectl("get", "pod", "web-"+n, "-o", "jsonpath={.status.podIP}")
	}
	// Pod to pod across the two containers: flannel's VXLAN between them.
	for from, to := range map[string]string{"ks": "ka", "ka": "ks"} {
		eventually(t, time.Minute, "web-"+from+" → web-"+to, func() error {
			out, err := kubectl("exec", "web-"+from, "--", "/webapp", "get", "http://"+ips[to]+":8080/")
			if err != nil || !strings.HasPrefix(out, "hello from web-"+to) {
				return fmt.Errorf("%q, %v", out, err)
			}
			return nil
		})
	}
	t.Logf("pods web-ks (%s) and web-ka (%s) Running, reachable from each other", ips["ks"], ips["ka"])

	// The server's state is in its data volume: the container removed
	// (with its anonymous volumes, /var/lib/kubelet and /var/log) and
	// created again on the same volume is the same node, with its pod.
	began = time.Now()
	d.must("rm", "-f", "-v", "ks")
	runNode(t, d, network, "ks", addr["ks"], data["ks"], nil, "server")
	waitReady(t, d, "ks", "ks", 3*time.Minute)
	t.Logf("server container removed and created again on its volume: node ks Ready again %s after docker rm", time.Since(began).Round(100*time.Millisecond))
	waitPods(t, kubectl, 3*time.Minute, "web-ks", "web-ka")
	// The agent still reaches the new server container: pod traffic and a
	// fresh exec on the agent's pod go through it.
	eventually(t, time.Minute, "web-ka → web-ks after the server came back", func() error {
		ip, _ := kubectl("get", "pod", "web-ks", "-o", "jsonpath={.status.podIP}")
		out, err := kubectl("exec", "web-ka", "--", "/webapp", "get", "http://"+ip+":8080/")
		if err != nil || !strings.HasPrefix(out, "hello from web-ks") {
			return fmt.Errorf("%q, %v", out, err)
		}
		return nil
	})

	// Deleted pods leave no zombie shims: docker-init (--init) reaps them.
	if _, err := kubectl("delete", "pod", "web-ks", "web-ka", "--wait"); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"ks", "ka"} {
		checkNoZombies(t, d, n)
	}

	// A container without a piece the node needs stops at once, naming the
	// docker option that adds it; one without --init warns.
	for _, tc := range []struct{ name, drop, want string }{
		{"kx-kmsg", "/dev/kmsg", "docker run --device /dev/kmsg"},
		{"kx-procsys", "systempaths=unconfined", "docker run --security-opt systempaths=unconfined"},
		{"kx-seccomp", "seccomp=unconfined", "docker run --security-opt seccomp=unconfined"},
		{"kx-init", "--init", "run an init in front of kedge (docker run --init)"},
	} {
		checkWithout(t, d, network, tc.name, tc.drop, tc.want)
	}

	logs := d.logs("ks", 100000)

	t.Logf("server container log (the container created again): %d lines (%d ERROR)", strings.Count(logs, "\n"), strings.Count(logs, "level=ERROR"))
	if f, ipf := hostNetState(t); f != forward || ipf != ipForward {
		t.Errorf("the host's network state changed: FORWARD %q → %q, ip_forward %q → %q", forward, f, ipForward, ipf)
	}
}

// runNode starts a node container named name (also its hostname) at ip
// with data as its /var/lib/kedge.
func runNode(t *testing.T, d *daemon, network, name, ip, data string, env []string, args ...string) {
	t.Helper()
	run := []string{"run", "-d", "--name", name, "--hostname", name, "--network", network, "--ip", ip}
	run = append(run, NodeFlags...)
	for _, e := range env {
		run = append(run, "-e", strings.SplitN(e, "=", 2)[0])
	}
	run = append(run, "-v", data+":/var/lib/kedge", imageName)
	if _, err := d.dockerEnv(env, append(run, args...)...); err != nil {
		t.Fatal(err)
	}
}

// checkWithout runs a server container with one of NodeFlags left out (a
// flag's value with its flag) and waits for its log to say want.
func checkWithout(t *testing.T, d *daemon, network, name, drop, want string) {
	t.Helper()
	run := []string{"run", "-d", "--name", name, "--hostname", name, "--network", network}
	for _, f := range NodeFlags {
		switch {
		case f != drop:
			run = append(run, f)
		case !strings.HasPrefix(f, "-"):
			run = run[:len(run)-1] // a value: its flag goes too
		}
	}
	run = append(run, "-v", filepath.Join(d.dir, name)+":/var/lib/kedge", imageName, "server")
	d.must(run...)
	eventually(t, 2*time.Minute, name+" (without "+drop+") says "+want, func() error {
		if logs := d.logs(name, 200); !strings.Contains(logs, want) {
			return fmt.Errorf("not in its log yet:\n%s", tail(logs, 5))
		}
		return nil
	})
	d.must("rm", "-f", "-v", name)
	t.Logf("without %s: %q", drop, want)
}

// waitReady waits until node is Ready, asked in container server; it fails
// at once, with the container's log, if container node exits.
func waitReady(t *testing.T, d *daemon, server, node string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st, _ := d.docker("exec", server, "kubectl", "get", "node", node, "-o",
			`jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
		if st == "True" {
			return
		}
		running, _ := d.docker("inspect", "-f", "{{.State.Running}}", node)
		if running == "false" || time.Now().After(deadline) {
			t.Fatalf("node %s not Ready (running: %s):\n%s", node, running, d.logs(node, 40))
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// waitPods waits until the pods are Running.
func waitPods(t *testing.T, kubectl func(...string) (string, error), timeout time.Duration, pods ...string) {
	t.Helper()
	for _, p := range pods {
		eventually(t, timeout, "pod "+p+" Running", func() error {
			phase, err := kubectl("get", "pod", p, "-o", "jsonpath={.status.phase}")
			if phase != "Running" {
				events, _ := kubectl("get", "events", "--field-selector", "involvedObject.name="+p,
					"-o", "jsonpath={range .items[*]}{.reason}: {.message}{\"\\n\"}{end}")
				return fmt.Errorf("phase %q, %v; events:\n%s", phase, err, tail(events, 3))
			}
			return nil
		})
	}
}

// eventually retries f until it succeeds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %s: %v", what, timeout, err)
		}
		time.Sleep(time.Second)
	}
}
