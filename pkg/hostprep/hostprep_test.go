package hostprep

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

func TestMountFlags(t *testing.T) {
	for _, tc := range []struct {
		options string
		flags   uintptr
		ro      bool
	}{
		{"ro,nosuid,nodev,noexec,relatime", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC | unix.MS_RELATIME, true},
		{"rw,nosuid,nodev,noexec,relatime", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC | unix.MS_RELATIME, false},
		{"ro,noatime", unix.MS_NOATIME, true},
		{"rw", 0, false},
	} {
		flags, ro := mountFlags(tc.options)
		if flags != tc.flags || ro != tc.ro {
			t.Errorf("mountFlags(%q) = %#x, %v; want %#x, %v", tc.options, flags, ro, tc.flags, tc.ro)
		}
	}
}

// inMountNS is set in the child that TestRemount runs in a private mount
// namespace.
const inMountNS = "KEDGE_HOSTPREP_TEST_MOUNTNS"

// TestRemount bind-mounts a real cgroup hierarchy read-only, as a container
// runtime does, and checks that Start makes it writable (a cgroup can be
// made in it) and keeps nosuid, nodev and noexec. It runs in a private mount
// namespace (unshare -m), so the host's mounts are never touched.
func TestRemount(t *testing.T) {
	if os.Getenv(inMountNS) == "" {
		if os.Geteuid() != 0 {
			t.Skip("needs root (mount namespaces, mount)")
		}
		if _, err := exec.LookPath("unshare"); err != nil {
			t.Skip("needs unshare (util-linux)")
		}
		cmd := exec.Command("unshare", "--mount", "--propagation", "private", os.Args[0], "-test.run", "^TestRemount$", "-test.v")
		cmd.Env = append(os.Environ(), inMountNS+"=1")
		out, err := cmd.CombinedOutput()
		t.Logf("in a private mount namespace:\n%s", out)
		if err != nil {
			t.Fatal(err)
		}
		return
	}
	src := hierarchy(t)
	dir := t.TempDir()
	if err := unix.Mount(src, dir, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("", dir, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	cg := filepath.Join(dir, "kedge-hostprep-test")
	if err := os.Mkdir(cg, 0o755); !errors.Is(err, unix.EROFS) {
		t.Fatalf("mkdir on the read-only mount: %v, want EROFS", err)
	}

	only := func() ([]*mountinfo.Info, error) {
		return mountinfo.GetMounts(mountinfo.SingleEntryFilter(dir))
	}
	r := New(Config{CgroupMounts: only, ProcSys: none, Kmsg: os.Args[0], Pid: func() int { return 2 }})
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(cg, 0o755); err != nil {
		t.Fatalf("mkdir after Start: %v", err)
	}
	if err := os.Remove(cg); err != nil {
		t.Fatal(err)
	}
	mounts, err := only()
	if err != nil || len(mounts) != 1 {
		t.Fatalf("mount %s: %v %v", dir, mounts, err)
	}
	for _, o := range []string{"rw", "nosuid", "nodev", "noexec"} {
		if !strings.Contains(","+mounts[0].Options+",", ","+o+",") {
			t.Errorf("options after Start: %s, want %s among them", mounts[0].Options, o)
		}
	}
	// A second Start finds nothing to do.
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// hierarchy is a writable cgroup hierarchy of this host: a v1 controller's
// mount or the unified cgroup2 one.
func hierarchy(t *testing.T) string {
	t.Helper()
	mounts, err := cgroupMounts()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mounts {
		if _, ro := mountFlags(m.Options); !ro && (m.FSType == "cgroup2" || strings.Contains(m.VFSOptions, "pids")) {
			return m.Mountpoint
		}
	}
	t.Skip("no writable pids or cgroup2 hierarchy")
	return ""
}

// none is a mount list with nothing in it.
func none() ([]*mountinfo.Info, error) { return nil, nil }

// TestChecks: a missing /dev/kmsg, a read-only /proc/sys/net and a refused
// pivot_root stop the node with the docker option that fixes each; a read-only /proc/sys with a
// writable /proc/sys/net below it (systemd-nspawn's private network) does
// not; PID 1 is a warning.
func TestChecks(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	roProcSys := func() ([]*mountinfo.Info, error) {
		return []*mountinfo.Info{{Mountpoint: "/proc/sys", Options: "ro,nosuid,nodev,noexec,relatime", FSType: "proc"}}, nil
	}
	rwProcSys := func() ([]*mountinfo.Info, error) {
		return []*mountinfo.Info{{Mountpoint: "/proc/sys", Options: "rw,nosuid,nodev,noexec,relatime", FSType: "proc"}}, nil
	}
	netRW := func() ([]*mountinfo.Info, error) {
		return []*mountinfo.Info{
			{Mountpoint: "/proc/sys", Options: "ro,nosuid,nodev,noexec,relatime", FSType: "proc"},
			{Mountpoint: "/proc/sys/net", Options: "rw,nosuid,nodev,noexec,relatime", FSType: "proc"},
			{Mountpoint: "/proc/sysrq-trigger", Options: "ro", FSType: "proc"},
		}, nil
	}
	pid := func(n int) func() int { return func() int { return n } }
	for name, tc := range map[string]struct {
		cfg     Config
		wantErr string
		wantLog string
	}{
		"no /dev/kmsg":                       {Config{Kmsg: filepath.Join(t.TempDir(), "kmsg"), ProcSys: rwProcSys, Pid: pid(2)}, "--device /dev/kmsg", ""},
		"read-only procfs":                   {Config{Kmsg: os.Args[0], ProcSys: roProcSys, Pid: pid(2)}, "systempaths=unconfined", ""},
		"read-only procfs but /proc/sys/net": {Config{Kmsg: os.Args[0], ProcSys: netRW, Pid: pid(2)}, "", ""},
		"pivot_root refused":                 {Config{Kmsg: os.Args[0], ProcSys: rwProcSys, Pid: pid(2), PivotRoot: func() error { return unix.EPERM }}, "seccomp=unconfined", ""},
		"PID 1":                              {Config{Kmsg: os.Args[0], ProcSys: rwProcSys, Pid: pid(1)}, "", "docker run --init"},
		"everything in place":                {Config{Kmsg: os.Args[0], ProcSys: rwProcSys, Pid: pid(2)}, "", ""},
	} {
		t.Run(name, func(t *testing.T) {
			logs.Reset()
			tc.cfg.Log = log
			tc.cfg.CgroupMounts = none
			err := New(tc.cfg).Start(context.Background())
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Start: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("Start: %v, want an error naming %q", err, tc.wantErr)
			}
			if tc.wantLog == "" && logs.Len() > 0 {
				t.Errorf("logged %q, want nothing", logs.String())
			}
			if tc.wantLog != "" && !strings.Contains(logs.String(), tc.wantLog) {
				t.Errorf("logged %q, want %q", logs.String(), tc.wantLog)
			}
		})
	}
}

// TestProbePivotRoot: on this host (no seccomp filter, root) the probe
// reaches the kernel, which finds no such path.
func TestProbePivotRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_SYS_ADMIN)")
	}
	if err := probePivotRoot(); !errors.Is(err, unix.ENOENT) {
		t.Fatalf("probePivotRoot: %v, want ENOENT", err)
	}
}
