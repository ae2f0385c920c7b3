package hostprep

import (
	"fmt"
	"log/slog"
	"strings"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// remountCgroups remounts the read-only cgroup mounts read-write, keeping
// their other flags (nosuid, nodev, noexec, the atime mode).
func remountCgroups(list func() ([]*mountinfo.Info, error), log *slog.Logger) error {
	mounts, err := list()
	if err != nil {
		return fmt.Errorf("list the cgroup mounts: %w", err)
	}
	var done []string
	for _, m := range mounts {
		flags, ro := mountFlags(m.Options)
		if !ro {
			continue
		}
		if err := unix.Mount("", m.Mountpoint, "", flags|unix.MS_REMOUNT|unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("%s is mounted read-only (a container's cgroups) and remounting it read-write failed: %w; "+
				"the kubelet creates the pods' cgroups there: run the container with --cap-add SYS_ADMIN "+
				"--security-opt apparmor=unconfined (or --privileged)", m.Mountpoint, err)
		}
		done = append(done, m.Mountpoint)
	}
	if len(done) > 0 {
		log.Info("remounted the read-only cgroup mounts read-write (kedge runs in a container)", "mounts", strings.Join(done, " "))
	}
	return nil
}

// cgroupMounts lists the cgroup and cgroup2 mounts of the process.
func cgroupMounts() ([]*mountinfo.Info, error) {
	return mountinfo.GetMounts(func(m *mountinfo.Info) (bool, bool) {
		return m.FSType != "cgroup" && m.FSType != "cgroup2", false
	})
}

// mountFlags turns a mount's per-mount options (mountinfo's sixth field,
// "ro,nosuid,nodev,noexec,relatime") into the flags to keep when it is
// remounted, and says whether it is read-only.
func mountFlags(options string) (flags uintptr, readOnly bool) {
	for _, o := range strings.Split(options, ",") {
		switch o {
		case "ro":
			readOnly = true
		case "nosuid":
			flags |= unix.MS_NOSUID
		case "nodev":
			flags |= unix.MS_NODEV
		case "noexec":
			flags |= unix.MS_NOEXEC
		case "noatime":
			flags |= unix.MS_NOATIME
		case "nodiratime":
			flags |= unix.MS_NODIRATIME
		case "relatime":
			flags |= unix.MS_RELATIME
		case "strictatime":
			flags |= unix.MS_STRICTATIME
		}
	}
	return flags, readOnly
}
