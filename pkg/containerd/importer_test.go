package containerd

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
)

// logRecorder keeps the messages of a slog logger.
type logRecorder struct {
	mu   sync.Mutex
	msgs []string
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *logRecorder) WithGroup(string) slog.Handler            { return r }
func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	line := rec.Message
	rec.Attrs(func(a slog.Attr) bool { line += " " + a.String(); return true })
	r.mu.Lock()
	r.msgs = append(r.msgs, line)
	r.mu.Unlock()
	return nil
}

// count returns how many messages contain all of parts.
func (r *logRecorder) count(parts ...string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, m := range r.msgs {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(m, p)
		}
		if all {
			n++
		}
	}
	return n
}

func (r *logRecorder) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.msgs, "\n")
}

// testImporter runs ImageImporters on a directory against a running
// containerd: the files present at Start are imported before Ready, a file
// dropped later is imported once it stops changing, a broken file is tried
// once, and a second importer skips what the record says is imported.
func testImporter(ctx context.Context, t *testing.T, cfg Config, img imageParts) {
	dir := filepath.Join(t.TempDir(), "images")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	const early, late = "kedge.test/early:1", "kedge.test/late:1"
	writeFile(t, dir, "early.tar.zst", zstdCompress(t, ociArchive(t, img, early)))
	writeFile(t, dir, "notes.txt", []byte("not an image"))

	run := func(rec *logRecorder) *ImageImporter {
		m := NewImageImporter(ImporterConfig{
			Dir: dir, Address: cfg.Address, Pinned: []string{late}, Interval: 100 * time.Millisecond,
			Log: slog.New(rec),
		})
		mustf(t, m.Start(ctx), "importer Start")
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		mustf(t, m.Ready(rctx), "importer Ready")
		return m
	}
	stop := func(m *ImageImporter) {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		mustf(t, m.Stop(sctx), "importer Stop")
	}

	rec := &logRecorder{}
	m := run(rec)
	cl, err := client.New(cfg.Address, client.WithDefaultNamespace(Namespace))
	mustf(t, err, "client")
	defer cl.Close()
	nctx := namespaces.WithNamespace(ctx, Namespace)
	if _, err := cl.GetImage(nctx, early); err != nil {
		t.Errorf("%s not imported before Ready: %v\n%s", early, err, rec)
	}

	writeFile(t, dir, "late.tar", dockerArchive(t, img, late))
	writeFile(t, dir, "broken.tar", []byte("not a tarball"))
	deadline := time.Now().Add(15 * time.Second)
	for rec.count("imported images", "late.tar") == 0 || rec.count("import failed", "broken.tar") == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("late.tar and broken.tar not handled:\n%s", rec)
		}
		time.Sleep(50 * time.Millisecond)
	}
	latest, err := cl.ImageService().Get(nctx, late)
	mustf(t, err, "get %s", late)
	if latest.Labels[PinnedLabel] != PinnedValue {
		t.Errorf("%s not pinned: labels %v", late, latest.Labels)
	}
	time.Sleep(500 * time.Millisecond) // several more looks
	if n := rec.count("import failed", "broken.tar"); n != 1 {
		t.Errorf("broken.tar tried %d times, want once:\n%s", n, rec)
	}
	if n := rec.count("imported images"); n != 2 {
		t.Errorf("%d imports, want 2:\n%s", n, rec)
	}
	stop(m)

	// A restart imports nothing the record has, but tries the broken file again.
	rec2 := &logRecorder{}
	stop(run(rec2))
	if n := rec2.count("imported images"); n != 0 {
		t.Errorf("second importer imported again:\n%s", rec2)
	}
	if n := rec2.count("import failed", "broken.tar"); n != 1 {
		t.Errorf("second importer did not retry broken.tar:\n%s", rec2)
	}
	// Unless containerd lost the images.
	mustf(t, cl.ImageService().Delete(nctx, early), "delete %s", early)
	rec3 := &logRecorder{}
	stop(run(rec3))
	if rec3.count("imported images", "early.tar.zst") != 1 || rec3.count("imported images", "late.tar") != 0 {
		t.Errorf("third importer: want early.tar.zst imported again, late.tar skipped:\n%s", rec3)
	}
}
