// Package hostprep readies the host's view a node needs before containerd
// and the kubelet start, and says plainly what is missing when kedge runs
// in a container that lacks it (the node image, docs/node-image.md). On a
// host every check passes and nothing changes.
//
//   - cgroups: docker and podman mount them read-only in every container
//     that is not --privileged; the kubelet creates the pods' cgroups
//     (kubepods/…) there and runc the containers'. Read-only cgroup mounts
//     are remounted read-write (this needs CAP_SYS_ADMIN and a security
//     profile that allows mount: --cap-add SYS_ADMIN --security-opt
//     apparmor=unconfined). With a private cgroup namespace (--cgroupns
//     private) the container's own cgroup is the root it sees, so kubepods
//     is nested in it and two node containers on one host do not share it.
//   - /dev/kmsg: the kubelet's OOM watcher reads the kernel log and the
//     kubelet does not start without it (--device /dev/kmsg).
//   - /proc/sys/net: kube-proxy sets conntrack and routing sysctls there
//     and stops when it cannot; docker mounts /proc/sys read-only
//     (--security-opt systempaths=unconfined lifts that).
//   - keyctl: runc gives every container a session keyring of its own;
//     docker's default seccomp profile blocks keyctl, and then every pod
//     fails with "unable to join session keyring" while the node looks
//     Ready (--security-opt seccomp=unconfined).
//   - PID 1: containerd's shims outlive their parent and are reparented to
//     PID 1; kedge does not reap processes it did not start (os/exec waits
//     for its own), so a kedge that is PID 1 leaves a zombie per deleted pod
//     (docker run --init puts a reaper in front of it). A warning.
//
// It is the first component of every node (pkg/agent):
//
//	m.Add(hostprep.New(hostprep.Config{Log: log}))
package hostprep

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strings"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/kedge-io/kedge/pkg/component"
)

// Paths the node needs.
const (
	KmsgPath      = "/dev/kmsg"
	ProcSysNetDir = "/proc/sys/net"
)

// Config says where to log; the other fields replace what the component
// reads from the host (tests).
type Config struct {
	Log *slog.Logger
	// CgroupMounts lists the cgroup mounts; nil reads /proc/self/mountinfo.
	CgroupMounts func() ([]*mountinfo.Info, error)
	// Kmsg is the kernel log device; empty: KmsgPath.
	Kmsg string
	// ProcSys lists the mounts at and below /proc/sys; nil reads
	// /proc/self/mountinfo.
	ProcSys func() ([]*mountinfo.Info, error)
	// Pid is the process's PID; nil: os.Getpid.
	Pid func() int
	// Keyctl reads the session keyring's ID (keyctl(2)); nil: the system
	// call.
	Keyctl func() error
}

// Prep is the component.
type Prep struct {
	cfg Config
}

var _ component.Component = (*Prep)(nil)

// New returns the component.
func New(cfg Config) *Prep {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.CgroupMounts == nil {
		cfg.CgroupMounts = cgroupMounts
	}
	if cfg.Kmsg == "" {
		cfg.Kmsg = KmsgPath
	}
	if cfg.ProcSys == nil {
		cfg.ProcSys = func() ([]*mountinfo.Info, error) {
			return mountinfo.GetMounts(mountinfo.PrefixFilter("/proc/sys"))
		}
	}
	if cfg.Pid == nil {
		cfg.Pid = os.Getpid
	}
	if cfg.Keyctl == nil {
		cfg.Keyctl = func() error {
			// Only reads: create=false makes no keyring.
			_, err := unix.KeyctlGetKeyringID(unix.KEY_SPEC_SESSION_KEYRING, false)
			return err
		}
	}
	return &Prep{cfg: cfg}
}

// Name implements component.Component.
func (*Prep) Name() string { return "host-prep" }

// Start remounts read-only cgroup mounts read-write and fails, naming the
// container option that fixes it, when /dev/kmsg is missing, /proc/sys/net
// is read-only or keyctl is refused.
func (p *Prep) Start(context.Context) error {
	if err := remountCgroups(p.cfg.CgroupMounts, p.cfg.Log); err != nil {
		return err
	}
	if _, err := os.Stat(p.cfg.Kmsg); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s is missing: the kubelet reads the kernel log there (its OOM watcher); "+
			"in a container, pass the device: docker run --device /dev/kmsg", p.cfg.Kmsg)
	}
	mounts, err := p.cfg.ProcSys()
	if err != nil {
		return fmt.Errorf("list the mounts of /proc/sys: %w", err)
	}
	// The mount that holds /proc/sys/net: the deepest one above it.
	var net *mountinfo.Info
	for _, m := range mounts {
		if (m.Mountpoint == ProcSysNetDir || strings.HasPrefix(ProcSysNetDir, m.Mountpoint+"/")) &&
			(net == nil || len(m.Mountpoint) > len(net.Mountpoint)) {
			net = m
		}
	}
	if net != nil {
		if _, ro := mountFlags(net.Options); ro {
			return fmt.Errorf("%s is mounted read-only: kube-proxy sets the node's conntrack and routing sysctls in %s; "+
				"in a docker container: docker run --security-opt systempaths=unconfined (or --privileged)", net.Mountpoint, ProcSysNetDir)
		}
	}
	// A seccomp filter answers EPERM; a kernel without keys ENOSYS or
	// EOPNOTSUPP, and no session keyring yet ENOKEY: runc copes with those.
	if err := p.cfg.Keyctl(); errors.Is(err, unix.EPERM) {
		return fmt.Errorf("the keyctl system call is refused (%v), as docker's default seccomp profile does: runc gives every "+
			"pod container a session keyring and no pod could start; in a docker container: docker run --security-opt seccomp=unconfined", err)
	}
	if p.cfg.Pid() == 1 {
		p.cfg.Log.Warn("kedge runs as PID 1: the containerd shims of deleted pods stay zombies, as kedge reaps only its own children; " +
			"in a container, run an init in front of kedge (docker run --init)")
	}
	return nil
}

// Ready implements component.Component: Start did everything.
func (*Prep) Ready(context.Context) error { return nil }

// Stop implements component.Component; the mounts stay writable.
func (*Prep) Stop(context.Context) error { return nil }
