package harness

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/moby/sys/mountinfo"
)

// cgroupMounts lists the host's cgroup hierarchies (v1 controllers, the
// named systemd one and, on a hybrid host, the unified v2 one).
func cgroupMounts() ([]string, error) {
	mounts, err := mountinfo.GetMounts(func(m *mountinfo.Info) (bool, bool) {
		return m.FSType != "cgroup" && m.FSType != "cgroup2", false
	})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, m := range mounts {
		out = append(out, m.Mountpoint)
	}
	return out, nil
}

// createCgroups creates the kubelet's cgroup root in every hierarchy: the
// kubelet refuses a --cgroup-root that does not exist. cpuset needs its
// CPUs and memory nodes set before anything can join it.
func createCgroups(root string) error {
	hierarchies, err := cgroupMounts()
	if err != nil {
		return err
	}
	for _, h := range hierarchies {
		dir := filepath.Join(h, root)
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("cgroup %s: %w", dir, err)
		}
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			val, err := os.ReadFile(filepath.Join(h, f))
			if err != nil {
				continue // not the cpuset hierarchy
			}
			if err := os.WriteFile(filepath.Join(dir, f), val, 0o644); err != nil {
				return fmt.Errorf("cgroup %s/%s: %w", dir, f, err)
			}
		}
	}
	return nil
}

// cgroupDirs lists the directories of the cgroup root in every hierarchy,
// deepest first.
func cgroupDirs(root string) []string {
	hierarchies, _ := cgroupMounts()
	var out []string
	for _, h := range hierarchies {
		_ = filepath.WalkDir(filepath.Join(h, root), func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				out = append(out, p)
			}
			return nil
		})
	}
	sort.Slice(out, func(i, j int) bool { return strings.Count(out[i], "/") > strings.Count(out[j], "/") })
	return out
}

// removeCgroups removes the cgroup root and everything below it, retrying
// while the last processes of the node die.
func removeCgroups(root string) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		var errs []error
		for _, d := range cgroupDirs(root) {
			if err := os.Remove(d); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
		}
		if len(errs) == 0 || time.Now().After(deadline) {
			return errors.Join(errs...)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// removeStaleCgroups removes the empty cgroup roots that a crashed run left
// (its nodes' processes died with their init; the directories stay). A
// cgroup that still has processes is kept: rmdir fails on it.
func removeStaleCgroups() {
	hierarchies, _ := cgroupMounts()
	seen := map[string]bool{}
	for _, h := range hierarchies {
		matches, _ := filepath.Glob(filepath.Join(h, "kedge-e2e-*"))
		for _, m := range matches {
			seen["/"+filepath.Base(m)] = true
		}
	}
	for root := range seen {
		for _, d := range cgroupDirs(root) {
			_ = os.Remove(d)
		}
	}
}
