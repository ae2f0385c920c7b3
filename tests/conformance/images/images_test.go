package images

import (
	"archive/tar"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// TestInRoot: symlinks, absolute ones and ".." included, resolve inside
// the tree as in a chroot.
func TestInRoot(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"usr/bin", "usr/lib/x86_64-linux-gnu", "usr/lib64"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	links := map[string]string{
		"bin":                               "usr/bin",
		"lib64":                             "/usr/lib64",
		"usr/lib64/ld-linux-x86-64.so.2":    "../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
		"usr/bin/escape":                    "../../../../etc/passwd",
		"usr/lib/x86_64-linux-gnu/libc.so6": "/../../usr/lib/x86_64-linux-gnu/real",
	}
	for l, target := range links {
		if err := os.Symlink(target, filepath.Join(root, l)); err != nil {
			t.Fatal(err)
		}
	}
	for rel, want := range map[string]string{
		"bin/busybox":                       "usr/bin/busybox",
		"lib64/ld-linux-x86-64.so.2":        "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
		"bin/escape":                        "etc/passwd",
		"usr/lib/x86_64-linux-gnu/libc.so6": "usr/lib/x86_64-linux-gnu/real",
	} {
		if got := inRoot(root, rel); got != filepath.Join(root, want) {
			t.Errorf("inRoot(%s) = %s, want <root>/%s", rel, got, want)
		}
	}
}

// TestLayerOf: entries keep their type, mode (setuid too) and owner.
func TestLayerOf(t *testing.T) {
	l, err := LayerOf([]File{{Path: "usr/local/bin/nnp", Mode: 0o755 | os.ModeSetuid, Data: []byte("x")},
		{Path: "agnhost-2", Link: "agnhost"}, {Path: "home/u", Dir: true, Mode: 0o700, UID: 1000, GID: 1000}})
	if err != nil {
		t.Fatal(err)
	}
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got := map[string]*tar.Header{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got[h.Name] = h
	}
	if h := got["usr/local/bin/nnp"]; h == nil || h.Mode != 0o4755 || h.Typeflag != tar.TypeReg {
		t.Errorf("nnp: %+v", h)
	}
	if h := got["agnhost-2"]; h == nil || h.Typeflag != tar.TypeSymlink || h.Linkname != "agnhost" {
		t.Errorf("agnhost-2: %+v", h)
	}
	if h := got["home/u/"]; h == nil || h.Typeflag != tar.TypeDir || h.Uid != 1000 || h.Mode != 0o700 {
		t.Errorf("home/u: %+v", h)
	}
}

// TestStandins builds the busybox and agnhost stand-ins from the cached
// Debian rootfs and the built tools, unpacks them and runs what the specs
// run in them, chrooted (root; skipped without the rootfs and tools, which
// make conformance makes).
func TestStandins(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chroot needs root")
	}
	tools, _ := filepath.Abs("../../../bin/conformance")
	if _, err := os.Stat(filepath.Join(CacheDir, "debian.stamp")); err != nil {
		t.Skipf("no Debian rootfs in %s yet (make conformance makes it)", CacheDir)
	}
	if _, err := os.Stat(filepath.Join(tools, "agnhost")); err != nil {
		t.Skipf("no tools in %s (scripts/conformance-tools.sh)", tools)
	}
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "k8s.io/kubernetes").Output()
	if err != nil {
		t.Fatal(err)
	}
	b := &Builder{Tools: tools, Kubernetes: strings.TrimSpace(string(out))}
	refs := []string{"registry.k8s.io/e2e-test-images/busybox:1.37.0-1", "registry.k8s.io/e2e-test-images/agnhost:2.63.0",
		"registry.k8s.io/e2e-test-images/agnhost:2.55", "gcr.io/k8s-authenticated-test/agnhost:2.6"}
	set, skipped, err := b.Build("registry.k8s.io", refs)
	if err != nil {
		t.Fatal(err)
	}
	if len(set) != 3 || len(skipped) != 1 || skipped[0] != refs[3] {
		t.Fatalf("built %d, skipped %v", len(set), skipped)
	}
	d1, _ := set[1].Image.Digest()
	d2, _ := set[2].Image.Digest()
	if d1 == d2 {
		t.Errorf("agnhost:2.63.0 and agnhost:2.55 are the same image %s", d1)
	}

	bb := unpack(t, set[0].Image)
	for cmd, want := range map[string]string{
		// Applets are programs of their own: a sh -c that runs nc or env
		// execs /bin/nc, /bin/env (busybox-static's sh would run them
		// in-process).
		`for p in nc env wget sleep; do command -v $p; done`: "/bin/nc\n/bin/env\n/bin/wget\n/bin/sleep",
		`env -i FOO=bar env`: "FOO=bar",
		// sh passes names that are not shell identifiers on (the envFrom
		// prefix specs): busybox's ash would drop them.
		`env '1-data-1=value-1' sh -c env`:  "1-data-1=value-1",
		`env '#@!data-1=value-1' sh -c env`: "#@!data-1=value-1",
		`id -un`:                            "root",
	} {
		got, err := exec.Command("chroot", bb, "/bin/sh", "-c", cmd).CombinedOutput()
		if err != nil || !strings.Contains(string(got), want) {
			t.Errorf("busybox: sh -c %q: %v\n%s\nwant %q", cmd, err, got, want)
		}
	}

	agn := unpack(t, set[1].Image)
	for cmd, want := range map[string]string{
		`command -v dig nslookup curl nc ip ss iperf bash getent wget ping`: "/usr/bin/dig",
		`id user-defined-in-image`: "uid=1000(user-defined-in-image) gid=1000(user-defined-in-image) groups=1000(user-defined-in-image),50000(group-defined-in-image)",
		`ls /agnhost-2 /localhost.crt /localhost.key /coredns && test -d /uploads && echo ok`: "ok",
		`/agnhost-2 --help`:  "test-webserver",
		`getent group 50000`: "group-defined-in-image:x:50000:user-defined-in-image",
		// The image volume spec looks for it in kitten, built as agnhost.
		`cat /etc/os-release`: "Alpine Linux",
	} {
		got, err := exec.Command("chroot", agn, "/bin/sh", "-c", cmd).CombinedOutput()
		if err != nil || !strings.Contains(string(got), want) {
			t.Errorf("agnhost: sh -c %q: %v\n%s\nwant %q", cmd, err, got, want)
		}
	}
	cfg, _ := set[1].Image.ConfigFile()
	if cfg.Config.Entrypoint[0] != "/agnhost" || cfg.Config.Cmd[0] != "pause" || cfg.Config.Labels[RefLabel] != refs[1] {
		t.Errorf("agnhost config: %+v", cfg.Config)
	}
}

// unpack writes img's file system into a new directory.
func unpack(t *testing.T, img v1.Image) string {
	t.Helper()
	dir := t.TempDir()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return dir
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, h.Name)
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(p, os.FileMode(h.Mode).Perm())
		case tar.TypeSymlink:
			os.MkdirAll(filepath.Dir(p), 0o755)
			err = os.Symlink(h.Linkname, p)
		case tar.TypeLink:
			err = os.Link(filepath.Join(dir, h.Linkname), p)
		case tar.TypeReg:
			os.MkdirAll(filepath.Dir(p), 0o755)
			var f *os.File
			if f, err = os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode).Perm()); err == nil {
				_, err = io.Copy(f, tr)
				f.Close()
			}
		}
		if err != nil {
			t.Fatalf("unpack %s: %v", h.Name, err)
		}
	}
}
