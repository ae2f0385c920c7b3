package harness

import (
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestCheckFreeDisk(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounts a tmpfs: needs root")
	}
	// A 64 MiB filesystem never has room for a cluster.
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=64m"); err != nil {
		t.Skipf("tmpfs: %v", err)
	}
	defer unix.Unmount(dir, unix.MNT_DETACH)
	err := checkFreeDisk(dir)
	if err == nil || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "evict") {
		t.Fatalf("64 MiB tmpfs: err = %v, want one naming %s and the eviction", err, dir)
	}
	t.Log(err)
	if err := checkFreeDisk(dir + "/missing"); err == nil {
		t.Error("a missing directory passed")
	}
}
