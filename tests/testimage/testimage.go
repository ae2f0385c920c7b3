// Package testimage builds the image the integration and e2e tests run: the
// static webapp program (./webapp: an HTTP server answering with its
// hostname, plus `get URL` and `resolve NAME` client modes for kubectl exec)
// packed as an image tarball, and drops it where a node imports it.
//
//	testimage.Drop(t, dataDir, testimage.Build(t))
package testimage

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/kedge-io/kedge/pkg/images/ociimage"
)

// Name is the image's name.
const Name = "kedge.local/webapp:test"

// Build compiles ./webapp statically and returns it as an image tarball
// whose entrypoint is /webapp.
func Build(t *testing.T) []byte {
	t.Helper()
	return BuildWithEnv(t, Name)
}

// BuildWithEnv is Build with the image tagged tag and carrying the
// environment env ("KEY=value"): a different image (another digest) of the
// same program.
func BuildWithEnv(t *testing.T, tag string, env ...string) []byte {
	t.Helper()
	_, self, _, _ := runtime.Caller(0)
	bin := filepath.Join(t.TempDir(), "webapp")
	cmd := exec.Command("go", "build", "-o", bin, "./webapp")
	cmd.Dir = filepath.Dir(self)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build webapp: %v\n%s", err, out)
	}
	raw, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := ociimage.Write(ociimage.Spec{Binary: raw, Path: "/webapp", Env: env}, tag, &buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Drop writes the image tarball into <dataDir>/agent/images, which kedge
// imports on start and when new files appear.
func Drop(t *testing.T, dataDir string, image []byte) {
	t.Helper()
	dir := filepath.Join(dataDir, "agent", "images")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "webapp.tar"), image, 0o644); err != nil {
		t.Fatal(err)
	}
}
