package upgrade

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// release writes a fake release into dir: kedge-<arch>, a real executable
// (a shell script) that prints version v, and its sha256sum file (with sum
// instead of the right hash if sum is not empty).
func release(t *testing.T, dir, v, sum string) {
	t.Helper()
	bin := []byte("#!/bin/sh\necho \"kedge version " + v + " (abc1234) kubernetes v1.37.2\"\n")
	if err := os.WriteFile(filepath.Join(dir, "kedge-"+runtime.GOARCH), bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if sum == "" {
		h := sha256.Sum256(bin)
		sum = hex.EncodeToString(h[:])
	}
	line := sum + "  kedge-" + runtime.GOARCH + "\n"
	if err := os.WriteFile(filepath.Join(dir, "sha256sum-"+runtime.GOARCH+".txt"), []byte(line), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestFetch(t *testing.T) {
	ctx := context.Background()
	good := t.TempDir()
	release(t, good, "v1.37.2+kedge1", "")
	dst := filepath.Join(t.TempDir(), "upgrade", "kedge")

	// From a path and from a URL: the binary lands, 0755, runnable.
	if err := fetch(ctx, Plan{Version: "v1.37.2+kedge1", Path: good}, dst); err != nil {
		t.Fatalf("from a path: %v", err)
	}
	if v, err := binaryVersion(ctx, dst); err != nil || v != "v1.37.2+kedge1" {
		t.Fatalf("fetched binary: %q, %v", v, err)
	}
	srv := httptest.NewServer(http.FileServer(http.Dir(good)))
	defer srv.Close()
	os.Remove(dst)
	if err := fetch(ctx, Plan{Version: "v1.37.2+kedge1", URL: srv.URL + "/"}, dst); err != nil {
		t.Fatalf("from a URL: %v", err)
	}

	bad := t.TempDir()
	release(t, bad, "v1.37.2+kedge1", strings.Repeat("ab", 32))
	for _, tc := range []struct {
		what string
		plan Plan
		want string
	}{
		{"checksum mismatch", Plan{Version: "v1.37.2+kedge1", Path: bad}, "checksum mismatch"},
		{"another version", Plan{Version: "v1.38.0+kedge1", Path: good}, "is kedge v1.37.2+kedge1, the Upgrade asks for v1.38.0+kedge1"},
		{"no such path", Plan{Version: "v1", Path: filepath.Join(good, "nope")}, "no such file"},
		{"a 404", Plan{Version: "v1", URL: srv.URL + "/nope"}, "404 Not Found"},
	} {
		os.Remove(dst)
		err := fetch(ctx, tc.plan, dst)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.what, err, tc.want)
		}
		if _, serr := os.Stat(dst); serr == nil {
			t.Errorf("%s: a refused binary was left at %s", tc.what, dst)
		}
	}
}

func TestInstall(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "bin", "kedge")
	os.MkdirAll(filepath.Dir(exe), 0o755)
	os.WriteFile(exe, []byte("old"), 0o755)
	link := filepath.Join(dir, "kubectl")
	os.Symlink(exe, link)
	fetched := filepath.Join(dir, "new")
	os.WriteFile(fetched, []byte("new"), 0o755)
	if err := install(fetched, link); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(exe); string(got) != "new" {
		t.Fatalf("the symlink's target holds %q", got)
	}
	if fi, _ := os.Lstat(link); fi.Mode()&os.ModeSymlink == 0 {
		t.Fatal("the symlink was replaced by a file")
	}
}

func TestReadChecksum(t *testing.T) {
	sum := strings.Repeat("0f", 32)
	for _, tc := range []struct{ in, want, err string }{
		{sum + "  kedge-amd64\n", sum, ""},
		{sum + " *kedge-amd64\n", sum, ""},
		{"other  x\n" + sum + "  kedge-amd64\n", sum, ""},
		{"zz  kedge-amd64\n", "", "bad sha256"},
		{sum + "  kedge-arm64\n", "", "no checksum for kedge-amd64"},
	} {
		got, err := readChecksum(strings.NewReader(tc.in), "kedge-amd64")
		if got != tc.want || (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%q: %q, %v; want %q, %q", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestParsePlan(t *testing.T) {
	p := Plan{Upgrade: "u", Version: "v1", Path: "/srv"}
	if got, err := ParsePlan(p.String()); err != nil || got != p {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	for _, bad := range []string{"", "{", `{"version":"v1"}`, `{"version":"v1","url":"http://x","path":"/y"}`, `{"path":"/y"}`} {
		if _, err := ParsePlan(bad); err == nil {
			t.Errorf("ParsePlan(%q) accepted", bad)
		}
	}
}
