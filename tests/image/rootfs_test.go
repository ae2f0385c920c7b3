package image

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestShellcheck: the image's scripts are shellcheck-clean.
func TestShellcheck(t *testing.T) {
	if _, err := exec.LookPath("shellcheck"); err != nil {
		t.Skip("shellcheck not found (Debian: apt-get install shellcheck)")
	}
	root := repoRoot(t)
	for _, f := range []string{"package/rootfs.sh", "scripts/image.sh"} {
		if out, err := exec.Command("shellcheck", filepath.Join(root, f)).CombinedOutput(); err != nil {
			t.Errorf("shellcheck %s: %v\n%s", f, err, out)
		}
	}
}

// TestRootfs runs package/rootfs.sh in the Debian base (chroot, no docker)
// and then every program of the resulting file system in it (chroot
// again): each finds its shared libraries, iptables its extensions, kedge
// runs, and nothing else (no shell) is there.
func TestRootfs(t *testing.T) {
	bin := os.Getenv("KEDGE_BIN")
	if bin == "" {
		t.Skip("KEDGE_BIN is not set (make image-check sets it)")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root (chroot)")
	}
	if _, err := exec.LookPath("debootstrap"); err != nil {
		if _, err := os.Stat(BaseCache); err != nil {
			t.Skip("no Debian base and no debootstrap to make one (Debian: apt-get install debootstrap)")
		}
	}
	base, err := ensureBase()
	if err != nil {
		t.Fatal(err)
	}
	work, err := os.MkdirTemp(filepath.Join(base, "tmp"), "kedge-rootfs-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(work) })
	inBase := "/tmp/" + filepath.Base(work)
	for src, dst := range map[string]string{bin: "kedge", filepath.Join(repoRoot(t), "package", "rootfs.sh"): "rootfs.sh"} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(work, dst), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command("chroot", base, "sh", inBase+"/rootfs.sh", inBase+"/kedge", inBase+"/out").CombinedOutput(); err != nil {
		t.Fatalf("rootfs.sh: %v\n%s", err, out)
	}
	out := filepath.Join(work, "out")
	for _, tc := range []struct {
		argv []string
		want string
	}{
		{[]string{"/usr/bin/kedge", "--version"}, "kedge version"},
		{[]string{"/usr/bin/kubectl", "version", "--client"}, "Client Version"},
		{[]string{"/usr/sbin/iptables", "-V"}, "nf_tables"},
		{[]string{"/usr/sbin/ip6tables-restore", "-V"}, "nf_tables"},
		// -m comment loads libxt_comment.so from the xtables directory.
		{[]string{"/usr/sbin/iptables", "-m", "comment", "-h"}, "--comment COMMENT"},
		{[]string{"/usr/sbin/nft", "--version"}, "nftables"},
		{[]string{"/usr/bin/mount", "--version"}, "util-linux"},
		{[]string{"/usr/bin/umount", "--version"}, "util-linux"},
	} {
		got, err := exec.Command("chroot", append([]string{out}, tc.argv...)...).CombinedOutput()
		if err != nil || !strings.Contains(string(got), tc.want) {
			t.Errorf("%s in the image: %v\n%s", strings.Join(tc.argv, " "), err, got)
		}
	}
	for _, f := range []string{"usr/bin/sh", "usr/bin/bash", "usr/bin/apt-get", "usr/bin/dpkg", "usr/bin/ls"} {
		if _, err := os.Lstat(filepath.Join(out, f)); err == nil {
			t.Errorf("/%s is in the image: it should hold only kedge and what kedge runs", f)
		}
	}
	var size int64
	filepath.Walk(out, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			size += fi.Size()
		}
		return nil
	})
	kedge, _ := os.Stat(bin)
	t.Logf("rootfs: %d bytes, %d of them besides kedge", size, size-kedge.Size())
}
