package integration

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// kedgeBin is the binary under test: $KEDGE_BIN, built by `make integration`.
func kedgeBin(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("integration tests run a real server and need root")
	}
	bin := os.Getenv("KEDGE_BIN")
	if bin == "" {
		t.Skip("KEDGE_BIN is not set (run `make integration`)")
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("KEDGE_BIN: %v", err)
	}
	return bin
}

// freePort returns a TCP port nothing listens on right now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// syncBuffer is a bytes.Buffer safe for a writer process and a reading test.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// node is one `kedge server` process on a temp data dir.
type node struct {
	t          *testing.T
	bin        string
	dir        string
	port       int
	kubeconfig string
	cmd        *exec.Cmd
	log        *syncBuffer
	exited     chan struct{}
	waitErr    error
	started    time.Time
}

func newNode(t *testing.T) *node {
	bin := kedgeBin(t)
	dir := t.TempDir()
	return &node{t: t, bin: bin, dir: dir, port: freePort(t), kubeconfig: filepath.Join(dir, "kedge.yaml")}
}

func (n *node) dataDir() string { return filepath.Join(n.dir, "data") }

func (n *node) args(extra ...string) []string {
	return append([]string{"server",
		"--data-dir", n.dataDir(),
		"--write-kubeconfig", n.kubeconfig,
		"--https-listen-port", strconv.Itoa(n.port),
		"--node-name", "integration",
		"--config", filepath.Join(n.dir, "none.yaml"),
	}, extra...)
}

// start launches the server and registers a cleanup that kills it.
func (n *node) start(extra ...string) {
	n.t.Helper()
	// An empty config file, so that a host's /etc/kedge/config.yaml never leaks in.
	if err := os.WriteFile(filepath.Join(n.dir, "none.yaml"), nil, 0o600); err != nil {
		n.t.Fatal(err)
	}
	n.log = &syncBuffer{}
	n.cmd = exec.Command(n.bin, n.args(extra...)...)
	n.cmd.Stdout, n.cmd.Stderr = n.log, n.log
	n.exited = make(chan struct{})
	n.started = time.Now()
	if err := n.cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	go func() { n.waitErr = n.cmd.Wait(); close(n.exited) }()
	n.t.Cleanup(func() {
		select {
		case <-n.exited:
		default:
			_ = n.cmd.Process.Kill()
			<-n.exited
		}
		if n.t.Failed() {
			n.t.Logf("kedge log (last 6000 bytes):\n%s", tail(n.log.String(), 6000))
		}
	})
}

// waitReady waits for the "kedge server ready" line and /readyz through kubectl.
func (n *node) waitReady(timeout time.Duration) time.Duration {
	n.t.Helper()
	begin := time.Now()
	deadline := time.After(timeout)
	for !strings.Contains(n.log.String(), "kedge server ready") {
		select {
		case <-n.exited:
			n.t.Fatalf("kedge exited before ready: %v\n%s", n.waitErr, tail(n.log.String(), 6000))
		case <-deadline:
			n.t.Fatalf("kedge not ready after %s", timeout)
		case <-time.After(100 * time.Millisecond):
		}
	}
	if out, err := n.kubectl("get", "--raw", "/readyz"); err != nil || out != "ok" {
		n.t.Fatalf("/readyz = %q, %v", out, err)
	}
	return time.Since(begin)
}

// stop sends SIGTERM and waits; it fails the test if that takes over limit.
func (n *node) stop(limit time.Duration) time.Duration {
	n.t.Helper()
	begin := time.Now()
	if err := n.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		n.t.Fatal(err)
	}
	select {
	case <-n.exited:
	case <-time.After(limit):
		n.t.Fatalf("kedge still running %s after SIGTERM", limit)
	}
	if n.waitErr != nil {
		n.t.Fatalf("kedge exited with %v after SIGTERM\n%s", n.waitErr, tail(n.log.String(), 6000))
	}
	return time.Since(begin)
}

// kubectl runs `kedge kubectl` against this node's admin kubeconfig.
func (n *node) kubectl(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, n.bin, append([]string{"kubectl"}, args...)...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+n.kubeconfig)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return strings.TrimSpace(string(out)), fmt.Errorf("kedge kubectl %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

// sinceExec returns the since_exec value of the ready line.
func (n *node) sinceExec() string {
	m := regexp.MustCompile(`kedge server ready" since_exec=(\S+)`).FindStringSubmatch(n.log.String())
	if m == nil {
		return "?"
	}
	return m[1]
}

// rssMiB reads the resident set size of the running process.
func (n *node) rssMiB() float64 { return rssMiB(strconv.Itoa(n.cmd.Process.Pid)) }

// rssMiB reads the resident set size of process pid.
func rssMiB(pid string) float64 {
	raw, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return -1
	}
	m := regexp.MustCompile(`VmRSS:\s+(\d+) kB`).FindSubmatch(raw)
	if m == nil {
		return -1
	}
	kb, _ := strconv.Atoi(string(m[1]))
	return float64(kb) / 1024
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}

// children lists the pids whose parent is pid.
func children(pid int) []int {
	var out []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "status"))
		if err != nil {
			continue
		}
		m := regexp.MustCompile(`(?m)^PPid:\s+(\d+)$`).FindSubmatch(raw)
		if m != nil && string(m[1]) == strconv.Itoa(pid) {
			out = append(out, child)
		}
	}
	return out
}

// runKedge runs the binary to completion and returns its combined output and exit code.
func runKedge(t *testing.T, bin string, attr *syscall.SysProcAttr, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.SysProcAttr = attr
	out, err := cmd.CombinedOutput()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("kedge %s: %v", strings.Join(args, " "), err)
		}
		code = ee.ExitCode()
	}
	return string(out), code
}
