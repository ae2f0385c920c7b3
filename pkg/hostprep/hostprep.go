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
//     apparmor=unconfined). runc mounts the container's own cgroup there,
//     so kubepods is nested in the container's cgroup and two node
//     containers on one host keep apart.
//
//   - /dev/kmsg: the kubelet's OOM watcher reads the kernel log and the
//     kubelet does not start without it (--device /dev/kmsg).
//
//   - /proc/sys/net: kube-proxy sets conntrack and routing sysctls there
//     and stops when it cannot; docker mounts /proc/sys read-only
//     (--security-opt systempaths=unconfined lifts that).
//
//   - PID 1: containerd's shims outlive their parent and are reparented to
//     PID 1; kedge does not reap processes it did not start (os/exec waits
//     for its own), so a kedge that is PID 1 leaves a zombie per deleted pod
//     (docker run --init puts a reaper in front of it). A warning.
//
//   - pivot_root: runc enters every container's root with it; docker's
//     default seccomp profile refuses it, and then every pod fails with
//     "pivot_root .: operation not permitted" while the node looks Ready
//     (--security-opt seccomp=unconfined). Probed with a path that does
//     not exist: the kernel answers ENOENT, a seccomp filter EPERM.
//
// The same profile refuses keyctl; that is handled where it matters:
// hostinfo detects it and containerd tells runc not to make session
// keyrings (NoNewKeyring).
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
	"path/filepath"
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
	// PivotRoot probes pivot_root(2); nil: the system call on a path that
	// does not exist.
	PivotRoot func() error
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
	if cfg.PivotRoot == nil {
		cfg.PivotRoot = probePivotRoot
	}
	return &Prep{cfg: cfg}
}

// Name implements component.Component.
func (*Prep) Name() string { return "host-prep" }

// Start remounts read-only cgroup mounts read-write and fails, naming the
// container option that fixes it, when /dev/kmsg is missing, /proc/sys/net
// is read-only or pivot_root is refused.
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
	if err := p.cfg.PivotRoot(); errors.Is(err, unix.EPERM) {
		return fmt.Errorf("pivot_root is refused (%v): a seccomp filter (docker's default profile refuses it) or no CAP_SYS_ADMIN; "+
			"runc enters every container's root with it, so no pod could start: in a docker container, "+
			"docker run --security-opt seccomp=unconfined --cap-add SYS_ADMIN", err)
	}
	if p.cfg.Pid() == 1 {
		p.cfg.Log.Warn("kedge runs as PID 1: the containerd shims of deleted pods stay zombies, as kedge reaps only its own children; " +
			"in a container, run an init in front of kedge (docker run --init)")
	}
	return nil
}

// probePivotRoot calls pivot_root(2) on a path that does not exist (in a
// directory of its own, removed again): the kernel answers ENOENT after
// its permission check, a seccomp filter or a missing CAP_SYS_ADMIN EPERM.
// Nothing is ever pivoted.
func probePivotRoot() error {
	dir, err := os.MkdirTemp("", "kedge-pivot-probe-")
	if err != nil {
		return nil // no probe; runc reports it if pivot_root fails
	}
	defer os.Remove(dir)
	missing := filepath.Join(dir, "missing")
	return unix.PivotRoot(missing, missing)
}

// Ready implements component.Component: Start did everything.
func (*Prep) Ready(context.Context) error { return nil }

// Stop implements component.Component; the mounts stay writable.
func (*Prep) Stop(context.Context) error { return nil }
