package logging

import (
	"bytes"
	"encoding/json"
	"io"
	"log"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// lockedBuffer is a bytes.Buffer safe for concurrent use.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func TestQuietHandler(t *testing.T) {
	var buf bytes.Buffer
	now := time.Unix(1000, 0)
	h := quietHandler{Handler: slog.NewTextHandler(&buf, nil), until: now.Add(startupWindow), now: func() time.Time { return now }}
	l := slog.New(h).With("component", "kubelet")
	l.Error("Skipping pod synchronization", "err", "PLEG is not healthy")
	l.Error("Failed to ensure process in container with oom score", "err", "permission denied")
	l.Error("something that needs action")
	l.Error("Failed to update node PodCIDR after multiple attempts", "err", "Node \"a\" is invalid: spec.podCIDRs: Forbidden: node updates may not change podCIDR except from \"\" to valid")
	l.Error("Failed to update node PodCIDR after multiple attempts", "err", "the server was unable to return a response")
	if out := buf.String(); strings.Contains(out, "Skipping") || strings.Contains(out, "oom score") || !strings.Contains(out, "needs action") ||
		strings.Contains(out, "may not change podCIDR") || !strings.Contains(out, "unable to return a response") {
		t.Fatalf("during start-up:\n%s", out)
	}
	buf.Reset()
	now = now.Add(startupWindow + time.Second)
	l.Error("Skipping pod synchronization", "err", "PLEG is not healthy")
	l.Error("Failed to ensure process in container with oom score")
	if out := buf.String(); !strings.Contains(out, "Skipping") || strings.Contains(out, "oom score") {
		t.Fatalf("after start-up, start-up noise passes and the rest stays quiet:\n%s", out)
	}
	// With debug on, demoted lines show at DEBUG.
	buf.Reset()
	dh := quietHandler{Handler: slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}), until: time.Now().Add(time.Hour), now: time.Now}
	slog.New(dh).Error("Skipping pod synchronization")
	if out := buf.String(); !strings.Contains(out, "level=DEBUG") {
		t.Fatalf("debug: %s", out)
	}
}

func TestStdlogToSlog(t *testing.T) {
	var buf lockedBuffer
	l := slog.New(slog.NewTextHandler(&buf, nil))
	defer log.SetOutput(os.Stderr)
	routeStdlog(l)
	log.Print("[INFO] plugin/kubernetes: Caches are synced")
	log.Print("[ERROR] plugin/errors: 2 example. HINFO: dial udp 10.255.255.53:53: connect: network is unreachable")
	log.Print("plain line")
	out := buf.String()
	for _, want := range []string{
		`level=INFO msg="plugin/kubernetes: Caches are synced" component=coredns`,
		`level=ERROR msg="plugin/errors: 2 example. HINFO`,
		`level=INFO msg="plain line" component=stdlog`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("lacks %q:\n%s", want, out)
		}
	}
}

func TestZapJSONToSlog(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(slog.NewTextHandler(&buf, nil))
	line := `{"level":"warn","ts":"2026-12-01T10:22:25.22Z","logger":"etcd-client","caller":"v3@v3.7.2/retry_interceptor.go:68","msg":"retrying of unary invoker failed","attempt":3,"error":"rpc error"}`
	if !logZapJSON(l, []byte(line)) {
		t.Fatal("not recognised")
	}
	if out := buf.String(); !strings.Contains(out, `level=WARN msg="retrying of unary invoker failed" component=apiserver logger=etcd-client attempt=3 error="rpc error"`) {
		t.Fatalf("record: %s", out)
	}
	for _, notZap := range []string{"", "plain", `{"no":"level"}`, `{"level":"warn"`} {
		if logZapJSON(l, []byte(notZap)) {
			t.Errorf("%q taken for zap JSON", notZap)
		}
	}
}

// TestRouteStderr re-executes the test binary (fd 2 is process-wide):
// what the child writes to fd 2 comes out of its real stderr as records.
func TestRouteStderr(t *testing.T) {
	if os.Getenv("KEDGE_TEST_ROUTE_STDERR") == "1" {
		fd2 := os.NewFile(2, "fd2") // what upstream loggers opened at init
		log, flush := SetupProcess(false, Text)
		fd2.WriteString(`{"level":"error","ts":"x","logger":"etcd-client","msg":"lost etcd"}` + "\n")
		fd2.WriteString("a plain line\n")
		log.Info("kedge's own line")
		flush() // every line logged before the exit, none lost
		os.Stderr.WriteString("kedge: the last error, on the real stderr\n")
		os.Exit(1)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestRouteStderr$")
	cmd.Env = append(os.Environ(), "KEDGE_TEST_ROUTE_STDERR=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	_ = cmd.Run() // exits 1, as kedge after an error
	out := stderr.String()
	for _, want := range []string{
		`level=ERROR msg="lost etcd" component=apiserver logger=etcd-client`,
		`level=INFO msg="a plain line" component=stderr`,
		`level=INFO msg="kedge's own line"`,
		"kedge: the last error, on the real stderr\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("stderr lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, `{"level"`) {
		t.Errorf("raw JSON left:\n%s", out)
	}
}

// TestSetupFormatJSON: --log-format json writes one JSON object a line.
func TestSetupFormatJSON(t *testing.T) {
	var b strings.Builder
	SetupFormat(&b, false, JSON).Info("hello", "component", "test")
	Setup(io.Discard, false) // the process's routing back to text for the other tests
	var line map[string]any
	if err := json.Unmarshal([]byte(b.String()), &line); err != nil || line["msg"] != "hello" || line["component"] != "test" {
		t.Errorf("JSON line %q: %v %v", b.String(), line, err)
	}
	if _, err := ParseFormat("yaml"); err == nil || !strings.Contains(err.Error(), "--log-format") {
		t.Errorf("ParseFormat(yaml) = %v", err)
	}
}
