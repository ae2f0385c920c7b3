package bench

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func writeFiles(t *testing.T) []string {
	dir := t.TempDir()
	var files []string
	for name, content := range map[string]string{"a": strings.Repeat("kedge ", 50000), "b": strings.Repeat("xyz", 1000)} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
		files = append(files, p)
	}
	return files
}

func TestWriteDownload(t *testing.T) {
	files := writeFiles(t)
	var one bytes.Buffer
	if err := writeDownload(&one, files[:1]); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(files[0])
	if !bytes.Equal(one.Bytes(), raw) {
		t.Error("a single file is not sent as itself")
	}
	var many bytes.Buffer
	if err := writeDownload(&many, files); err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(&many)
	got := map[string]int64{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, tr)
		if n != h.Size || h.Mode&0o111 == 0 {
			t.Errorf("%s: %d bytes of %d, mode %o", h.Name, n, h.Size, h.Mode)
		}
		got[h.Name] = n
	}
	if got["a"] != 300000 || got["b"] != 3000 || len(got) != 2 {
		t.Errorf("tar holds %v", got)
	}
}

func TestDownloadSize(t *testing.T) {
	for _, tool := range []string{"gzip", "zstd"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	files := writeFiles(t)
	r, err := DownloadSize(context.Background(), files)
	if err != nil {
		t.Fatal(err)
	}
	if r.Raw != 303000 {
		t.Errorf("raw = %d, want 303000", r.Raw)
	}
	// Repetitive input compresses to a small fraction, never to nothing.
	for name, n := range map[string]int64{"gzip": r.Gzip, "zstd": r.Zstd} {
		if n <= 0 || n > r.Raw/20 {
			t.Errorf("%s: %d bytes of %d", name, n, r.Raw)
		}
	}
	// The gzip figure is the real stream: it decompresses to the tar.
	var tarball bytes.Buffer
	if err := writeDownload(&tarball, files); err != nil {
		t.Fatal(err)
	}
	n, err := compressedSize(context.Background(), files, []string{"cat"})
	if err != nil || n != int64(tarball.Len()) {
		t.Errorf("through cat: %d bytes, %v; want the tar's %d", n, err, tarball.Len())
	}
	if _, err := DownloadSize(context.Background(), []string{filepath.Join(t.TempDir(), "missing")}); err == nil {
		t.Error("a missing file was measured")
	}
}
