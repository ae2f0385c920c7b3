package harness

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Node is one kedge "machine" of a cluster.
type Node struct {
	c    *Cluster
	name string
	ip   net.IP
	dir  string
	argv []string
	veth string // host end of the node's cable, on the bridge

	initCmd    *exec.Cmd
	initPid    int // host pid of the node's PID 1
	initExited chan struct{}
	mntNS      string // readlink /proc/<init>/ns/mnt
	pidNS      string

	ctlMu sync.Mutex
	ctlIn io.WriteCloser
	ctlRd *bufio.Reader

	mu      sync.Mutex
	started time.Time // last Start
}

// Name is the node's name: its hostname and Kubernetes node name.
func (n *Node) Name() string { return n.name }

// IP is the node's address on the bridge.
func (n *Node) IP() net.IP { return n.ip }

// Dir is the node's directory on the host.
func (n *Node) Dir() string { return n.dir }

// DataDir is, on the host, the node's /var/lib/kedge (its --data-dir).
func (n *Node) DataDir() string { return filepath.Join(n.dir, "data") }

// LogFile is where kedge's output goes, across restarts.
func (n *Node) LogFile() string { return filepath.Join(n.dir, "kedge.log") }

// LogTail is the last size bytes of kedge's log, for a failure message.
func (n *Node) LogTail(size int) string { return tailFile(n.LogFile(), size) }

// CgroupRoot is the kubelet's --cgroup-root on this node.
func (n *Node) CgroupRoot() string { return "/kedge-e2e-" + n.c.id + "-" + n.name }

// Argv is the command line kedge runs with.
func (n *Node) Argv() []string { return append([]string(nil), n.argv...) }

func (n *Node) initLog() string { return tailFile(filepath.Join(n.dir, "init.log"), 4000) }

// env is the environment of kedge and of commands run in the node: the
// test's, without what would point them at another cluster.
func (n *Node) env() []string {
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case initEnv, "KUBECONFIG", "KEDGE_DATA_DIR", "CONTAINERD_ADDRESS", "CONTAINER_RUNTIME_ENDPOINT",
			"NOTIFY_SOCKET", "INVOCATION_ID", "RC_SVCNAME": // a node's kedge runs bare, under the harness's init
			continue
		}
		out = append(out, kv)
	}
	return out
}

// boot creates the node's cgroup root, starts its init in new namespaces,
// waits for its mounts and plugs it into the bridge.
func (n *Node) boot() error {
	n.veth = vethPrefix(n.c.id) + n.name
	if err := os.MkdirAll(n.dir, 0o755); err != nil {
		return err
	}
	if err := createCgroups(n.CgroupRoot()); err != nil {
		return err
	}
	machineID := make([]byte, 16)
	if _, err := rand.Read(machineID); err != nil {
		return err
	}
	d := func(p string) string { return filepath.Join(n.dir, p) }
	cfg := initConfig{
		Hostname: n.name,
		Dir:      n.dir,
		Overlays: []string{"/etc", "/var"},
		Binds: []bind{
			{d("run"), "/run"},
			{d("data"), "/var/lib/kedge"},
			{d("kubelet"), "/var/lib/kubelet"},
			{d("cni"), "/var/lib/cni"},
			{d("log"), "/var/log"},
			{d("etc-kedge"), "/etc/kedge"},
		},
		MachineID: hex.EncodeToString(machineID),
		Argv:      n.argv,
		Env:       n.env(),
		LogFile:   n.LogFile(),
		Keep:      []string{n.dir, n.c.bin, n.c.exe},
	}
	raw, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	initLog, err := os.Create(d("init.log"))
	if err != nil {
		return err
	}
	defer initLog.Close()
	cmd := exec.Command(n.c.exe)
	cmd.Dir = "/"
	cmd.Env = append(n.env(), initEnv+"="+string(raw))
	cmd.Stderr = initLog
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWPID | syscall.CLONE_NEWNET | syscall.CLONE_NEWUTS | syscall.CLONE_NEWIPC,
	}
	// No Pdeathsig (it fires when the forking thread ends, not the test):
	// if the test process dies, the init reads EOF on its stdin and exits.
	in, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start init: %w", err)
	}
	n.initCmd, n.initPid, n.ctlIn, n.ctlRd = cmd, cmd.Process.Pid, in, bufio.NewReader(out)
	n.initExited = make(chan struct{})
	go func() { _ = cmd.Wait(); close(n.initExited) }()
	n.mntNS, _ = os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", n.initPid))
	n.pidNS, _ = os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", n.initPid))

	line, err := n.readLine(60 * time.Second)
	if err != nil {
		return fmt.Errorf("init: %w", err)
	}
	if line != "ready" {
		return fmt.Errorf("init: %s", line)
	}
	return n.plugIn()
}

func (n *Node) readLine(timeout time.Duration) (string, error) {
	type result struct {
		line string
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		line, err := n.ctlRd.ReadString('\n')
		ch <- result{strings.TrimSpace(line), err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			return r.line, fmt.Errorf("read from init: %w", r.err)
		}
		return r.line, nil
	case <-time.After(timeout):
		return "", fmt.Errorf("no answer from init in %s", timeout)
	}
}

// ctl sends one command to the node's init and returns its answer.
func (n *Node) ctl(command string) (string, error) {
	n.ctlMu.Lock()
	defer n.ctlMu.Unlock()
	if n.ctlIn == nil {
		return "", fmt.Errorf("node %s: not booted", n.name)
	}
	if _, err := io.WriteString(n.ctlIn, command+"\n"); err != nil {
		return "", fmt.Errorf("node %s: %s: %w", n.name, command, err)
	}
	line, err := n.readLine(2 * time.Minute)
	if err != nil {
		return "", fmt.Errorf("node %s: %s: %w", n.name, command, err)
	}
	if strings.HasPrefix(line, "err") {
		return line, fmt.Errorf("node %s: %s: %s", n.name, command, line)
	}
	return line, nil
}

// Start starts kedge in the node.
func (n *Node) Start() {
	n.c.t.Helper()
	n.mu.Lock()
	n.started = time.Now()
	n.mu.Unlock()
	if _, err := n.ctl("start"); err != nil {
		n.c.t.Fatal(err)
	}
}

// Started is when kedge was last started.
func (n *Node) Started() time.Time {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.started
}

// Kill kills kedge with SIGKILL, like a crash or an OOM kill: its
// containerd shims and the pods' containers keep running.
func (n *Node) Kill() {
	n.c.t.Helper()
	if out, err := n.ctl("kill"); err != nil {
		n.c.t.Fatal(err)
	} else if out != "ok signal=SIGKILL" {
		n.c.t.Fatalf("node %s: kill: kedge had already stopped: %s", n.name, out)
	}
}

// Stop stops kedge with SIGTERM (SIGKILL after 30 s) and returns how it
// exited ("exit=0" when cleanly).
func (n *Node) Stop() string {
	n.c.t.Helper()
	out, err := n.ctl("term 30")
	if err != nil {
		n.c.t.Fatal(err)
	}
	return strings.TrimPrefix(out, "ok ")
}

// Running reports whether kedge runs in the node.
func (n *Node) Running() bool {
	n.c.t.Helper()
	out, err := n.ctl("status")
	if err != nil {
		n.c.t.Fatal(err)
	}
	return strings.HasPrefix(out, "running")
}

// exitStatus is how kedge last exited, or "running".
func (n *Node) exitStatus() string {
	out, err := n.ctl("status")
	if err != nil {
		return err.Error()
	}
	return strings.TrimPrefix(out, "stopped ")
}

// Restart stops kedge if it runs (SIGTERM) and starts it again.
func (n *Node) Restart() {
	n.c.t.Helper()
	if n.Running() {
		n.Stop()
	}
	n.Start()
}

// CutOff unplugs the node from the bridge (its cable's host end goes down).
func (n *Node) CutOff() {
	n.c.t.Helper()
	if err := n.setLink(false); err != nil {
		n.c.t.Fatalf("node %s: cut off: %v", n.name, err)
	}
}

// Reconnect plugs the node back in.
func (n *Node) Reconnect() {
	n.c.t.Helper()
	if err := n.setLink(true); err != nil {
		n.c.t.Fatalf("node %s: reconnect: %v", n.name, err)
	}
}

// Command returns a command that runs args inside the node's namespaces
// (mount, PID, network, UTS, IPC), as root, in /.
func (n *Node) Command(ctx context.Context, args ...string) *exec.Cmd {
	ns := []string{"--target", strconv.Itoa(n.initPid), "--mount", "--pid", "--net", "--uts", "--ipc", "--"}
	cmd := exec.CommandContext(ctx, "nsenter", append(ns, args...)...)
	cmd.Dir = "/"
	cmd.Env = n.env()
	return cmd
}

// Exec runs args inside the node and returns the combined output, trimmed.
// It gives up after two minutes.
func (n *Node) Exec(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := n.Command(ctx, args...).CombinedOutput()
	s := strings.TrimSpace(string(out))
	if err != nil {
		return s, fmt.Errorf("node %s: %s: %w: %s", n.name, strings.Join(args, " "), err, s)
	}
	return s, nil
}

// binary is where a node added with AddNodeRunning has its kedge.
func (n *Node) binary() string { return filepath.Join(n.dir, "bin", "kedge") }

// Install replaces the kedge binary of a node added with AddNodeRunning by a
// copy of bin (atomically: a running kedge keeps its old file); the next
// Start runs it.
func (n *Node) Install(bin string) error {
	if err := os.MkdirAll(filepath.Dir(n.binary()), 0o755); err != nil {
		return err
	}
	src, err := os.Open(bin)
	if err != nil {
		return err
	}
	defer src.Close()
	tmp := n.binary() + ".new"
	dst, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return err
	}
	if err := dst.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, n.binary())
}

// Kubectl runs `kedge kubectl` inside the node: it talks to the node's
// apiserver with the node's admin kubeconfig (/etc/kedge/kedge.yaml).
func (n *Node) Kubectl(args ...string) (string, error) {
	return n.Exec(append([]string{n.c.bin, "kubectl"}, args...)...)
}

// MustKubectl is Kubectl that fails the test on error.
func (n *Node) MustKubectl(args ...string) string {
	n.c.t.Helper()
	out, err := n.Kubectl(args...)
	if err != nil {
		n.c.t.Fatal(err)
	}
	return out
}

// Eventually calls f until it returns nil, every second, and fails the
// test with f's last error after timeout.
func (c *Cluster) Eventually(timeout time.Duration, what string, f func() error) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s: not after %s: %v", what, timeout, err)
		}
		time.Sleep(time.Second)
	}
}

// readyLine is kedge's log line once every component is ready.
var readyLine = regexp.MustCompile(`msg="kedge \w+ ready"`)

// startMarker starts the log of each Start in LogFile.
const startMarker = "==== e2e harness: "

// LoggedReady reports whether kedge logged its ready line since the last
// Start.
func (n *Node) LoggedReady() bool {
	return readyLine.MatchString(n.LogSinceStart())
}

// LogSinceStart is kedge's log since the last Start ("" before any).
func (n *Node) LogSinceStart() string {
	raw, err := os.ReadFile(n.LogFile())
	if err != nil {
		return ""
	}
	s := string(raw)
	if i := strings.LastIndex(s, startMarker); i >= 0 {
		s = s[i:]
	}
	return s
}

// WaitReady waits until kedge has logged that it is ready (every component
// of the node started) and the node's Ready condition is True, reported by
// the kubelet since the last Start (a Node killed a moment ago still shows
// the Ready its previous kubelet posted). It returns the time since Start.
func (n *Node) WaitReady(timeout time.Duration) time.Duration {
	n.c.t.Helper()
	since := n.Started().Add(-time.Second) // heartbeats have second precision
	n.c.Eventually(timeout, "node "+n.name+" Ready", func() error {
		if !n.Running() {
			n.c.t.Fatalf("node %s: kedge exited (%s):\n%s", n.name, n.exitStatus(), tailFile(n.LogFile(), 3000))
		}
		if !n.LoggedReady() {
			return fmt.Errorf("kedge has not logged %q yet", readyLine)
		}
		out, err := n.Kubectl("get", "node", n.name, "-o",
			`jsonpath={.status.conditions[?(@.type=="Ready")].status} {.status.conditions[?(@.type=="Ready")].lastHeartbeatTime}`)
		if err != nil {
			return err
		}
		status, beat, _ := strings.Cut(out, " ")
		ts, err := time.Parse(time.RFC3339, beat)
		if err != nil {
			return fmt.Errorf("Ready condition %q", out)
		}
		if status != "True" || ts.Before(since) {
			return fmt.Errorf("Ready=%s, last heartbeat %s (started %s)", status, beat, since.Format(time.RFC3339))
		}
		return nil
	})
	return time.Since(n.Started())
}

// processesInNamespaces lists the host processes in the node's mount or
// PID namespace (the init, kedge, shims, commands run with Exec).
func (n *Node) processesInNamespaces() []string {
	if n.mntNS == "" {
		return nil
	}
	var out []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		mnt, _ := os.Readlink(filepath.Join("/proc", e.Name(), "ns", "mnt"))
		pid, _ := os.Readlink(filepath.Join("/proc", e.Name(), "ns", "pid"))
		if mnt == n.mntNS || (n.pidNS != "" && pid == n.pidNS) {
			cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
			argv := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
			out = append(out, e.Name()+" "+argv[0])
		}
	}
	return out
}

// teardown stops kedge, runs `kedge killall` in the node, ends the node's
// init (and with it the namespaces) and removes its cable and cgroups.
func (n *Node) teardown() {
	t := n.c.t
	if n.initCmd == nil {
		return
	}
	select {
	case <-n.initExited:
		t.Errorf("node %s: its init had exited before the teardown:\n%s", n.name, n.initLog())
	default:
		if out, err := n.ctl("term 30"); err != nil {
			t.Errorf("node %s: stop kedge: %v", n.name, err)
		} else if out != "ok exit=0" && out != "ok not-running" {
			t.Logf("node %s: kedge stopped with %s", n.name, out)
		}
		if out, err := n.Exec(n.c.bin, "killall", "--data-dir", "/var/lib/kedge"); err != nil {
			t.Errorf("node %s: kedge killall: %v", n.name, err)
		} else if t.Failed() {
			t.Logf("node %s: kedge killall:\n%s", n.name, out)
		}
		for _, p := range n.processesInNamespaces() {
			if pid, _, _ := strings.Cut(p, " "); pid != strconv.Itoa(n.initPid) {
				t.Errorf("node %s: process left after kedge killall: %s", n.name, p)
			}
		}
		_, _ = n.ctl("exit")
	}
	_ = n.ctlIn.Close()
	select {
	case <-n.initExited:
	case <-time.After(10 * time.Second):
		t.Errorf("node %s: init did not exit; killing it", n.name)
		_ = n.initCmd.Process.Kill()
		<-n.initExited
	}
	// The kernel kills what is left in the PID namespace; wait for it.
	deadline := time.Now().Add(10 * time.Second)
	for len(n.processesInNamespaces()) > 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if err := n.deleteVeth(); err != nil {
		t.Errorf("node %s: delete %s: %v", n.name, n.veth, err)
	}
	if err := removeCgroups(n.CgroupRoot()); err != nil {
		t.Errorf("node %s: remove cgroups: %v", n.name, err)
	}
}
