package crictl

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	// Linked as in kedge: its init reformats urfave/cli's version output.
	_ "github.com/containerd/containerd/v2/cmd/ctr/app"
)

// TestMain lets a test run this test binary as `kedge crictl` (Run owns the
// process: crictl exits it on errors).
func TestMain(m *testing.M) {
	if dir := os.Getenv("KEDGE_CRICTL_TEST_DATA_DIR"); dir != "" {
		os.Exit(Run(dir, "/nonexistent/containerd.sock", os.Args[1:]))
	}
	os.Exit(m.Run())
}

func runSelf(t *testing.T, dataDir string, env []string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(append(os.Environ(), "KEDGE_CRICTL_TEST_DATA_DIR="+dataDir), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// The linked crictl prints its version as standalone crictl does, although
// ctr (also linked into kedge) reformats urfave/cli's version output.
func TestVersion(t *testing.T) {
	out, err := runSelf(t, t.TempDir(), nil, "--version")
	if err != nil {
		t.Fatalf("crictl --version: %v\n%s", err, out)
	}
	if !strings.HasPrefix(out, "crictl version ") {
		t.Errorf("crictl --version printed %q, want \"crictl version ...\"", out)
	}
}

// Run writes crictl's config for the node's socket, and crictl uses it: a
// command against a socket that does not exist fails naming it.
func TestConfigPointsAtSocket(t *testing.T) {
	dir := t.TempDir()
	out, err := runSelf(t, dir, nil, "--timeout", "1s", "ps")
	if err == nil {
		t.Fatalf("crictl ps against a missing socket succeeded:\n%s", out)
	}
	if !strings.Contains(out, "/nonexistent/containerd.sock") {
		t.Errorf("crictl ps error does not name the configured socket:\n%s", out)
	}
	conf, err := os.ReadFile(filepath.Join(dir, "agent", "etc", "crictl.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	want := "runtime-endpoint: unix:///nonexistent/containerd.sock\nimage-endpoint: unix:///nonexistent/containerd.sock\n"
	if string(conf) != want {
		t.Errorf("crictl.yaml = %q, want %q", conf, want)
	}
}

// CRI_CONFIG_FILE set by the user wins: Run writes nothing.
func TestUserConfigWins(t *testing.T) {
	dir := t.TempDir()
	user := filepath.Join(dir, "mine.yaml")
	if err := os.WriteFile(user, []byte("runtime-endpoint: unix:///nonexistent/mine.sock\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _ := runSelf(t, dir, []string{"CRI_CONFIG_FILE=" + user}, "--timeout", "1s", "ps")
	if !strings.Contains(out, "/nonexistent/mine.sock") {
		t.Errorf("crictl ps did not use CRI_CONFIG_FILE:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(dir, "agent", "etc", "crictl.yaml")); !os.IsNotExist(err) {
		t.Errorf("crictl.yaml written although CRI_CONFIG_FILE is set: %v", err)
	}
}
