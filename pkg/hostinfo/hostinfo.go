// Package hostinfo detects the host facts that decide how kedge configures
// containerd and the kubelet: the cgroup version, whether systemd is PID 1,
// and whether the process may set negative OOM score adjustments.
//
//	h := hostinfo.Detect()
//	if h.CgroupV1 { log.Warn("cgroup v1 host: kubelet runs with failCgroupV1=false") }
package hostinfo

import (
	"errors"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// capSysResource is CAP_SYS_RESOURCE's bit number (linux/capability.h).
const capSysResource = 24

// Host is what Detect found.
type Host struct {
	// CgroupV1 is true unless /sys/fs/cgroup is a cgroup2 (unified) mount.
	CgroupV1 bool
	// Systemd is true when systemd is PID 1, so the kubelet and containerd
	// use the systemd cgroup driver; otherwise cgroupfs.
	Systemd bool
	// CanRaiseOOMPriority is true when the process holds CAP_SYS_RESOURCE,
	// which runc needs to give containers a negative oom_score_adj.
	CanRaiseOOMPriority bool
	// KeyringRefused is true when keyctl(2) fails with EPERM: a seccomp
	// filter refuses it (docker's default profile, systemd-nspawn's), so
	// runc cannot give each container a session keyring of its own and
	// fails every container unless told not to (NoNewKeyring). Containers
	// inherit the filter, so none of them can use keyrings either.
	KeyringRefused bool
}

// CgroupDriver is "systemd" or "cgroupfs", as the kubelet and runc spell it.
func (h Host) CgroupDriver() string {
	if h.Systemd {
		return "systemd"
	}
	return "cgroupfs"
}

// Detect reads the facts from /sys, /proc and /run.
func Detect() Host {
	return Host{
		CgroupV1:            !isCgroup2("/sys/fs/cgroup"),
		Systemd:             systemdRunning(),
		CanRaiseOOMPriority: hasCapability("/proc/self/status", capSysResource),
		KeyringRefused:      keyringRefused(),
	}
}

func isCgroup2(path string) bool {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return false
	}
	return st.Type == unix.CGROUP2_SUPER_MAGIC
}

// systemdRunning follows sd_booted(3): /run/systemd/system exists.
func systemdRunning() bool {
	st, err := os.Lstat("/run/systemd/system")
	return err == nil && st.IsDir()
}

// keyringRefused reads the session keyring's ID (create=false: it makes
// none) and says whether keyctl was refused. A kernel without keys answers
// ENOSYS, which runc copes with; no session keyring yet is ENOKEY.
func keyringRefused() bool {
	_, err := unix.KeyctlGetKeyringID(unix.KEY_SPEC_SESSION_KEYRING, false)
	return errors.Is(err, unix.EPERM)
}

// hasCapability reads CapEff from a /proc/<pid>/status file.
func hasCapability(statusFile string, bit uint) bool {
	raw, err := os.ReadFile(statusFile)
	if err != nil {
		return false
	}
	return capEffHas(string(raw), bit)
}

func capEffHas(status string, bit uint) bool {
	for _, line := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && mask&(1<<bit) != 0
		}
	}
	return false
}
