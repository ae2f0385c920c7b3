package harness

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// initEnv carries the node's initConfig (JSON) to the re-executed test binary.
const initEnv = "KEDGE_E2E_NODE_INIT"

// bind is a bind mount of a host directory over a path inside the node.
type bind struct{ Source, Target string }

// initConfig is what the node's init needs to prepare the node and run kedge.
type initConfig struct {
	Hostname  string
	Dir       string   // the node's directory on the host
	Overlays  []string // paths made copy-on-write: upper and work dirs in Dir/overlay/<name>
	Binds     []bind   // after the overlays, in order
	MachineID string
	Argv      []string // kedge and its arguments
	Env       []string
	LogFile   string   // kedge's stdout and stderr, appended
	Keep      []string // paths whose mounts must stay reachable (the test binary, kedge)
}

// Main is the TestMain of a package that uses the harness: in a node's init
// process (the test binary re-executed by AddNode) it runs the init and
// exits; otherwise it runs the tests.
func Main(m interface{ Run() int }) {
	if raw := os.Getenv(initEnv); raw != "" {
		os.Exit(runInit(raw))
	}
	os.Exit(m.Run())
}

// runInit is the node's PID 1. It prepares the mounts, answers "ready", then
// serves commands, one per line on stdin, one answer line each on stdout:
//
//	start        start kedge                      → ok <pid> | err <msg>
//	kill         SIGKILL kedge and reap it         → ok <status>
//	term <sec>   SIGTERM, SIGKILL after <sec>      → ok <status>
//	status                                         → running <pid> | stopped <status>
//	poweroff     SIGKILL every process, clear /run, mounts, links, rules → ok <status> <notes>
//	exit, EOF    exit: the kernel kills everything left in the node
func runInit(raw string) int {
	var cfg initConfig
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, "init: config:", err)
		return 2
	}
	if err := setupNode(cfg); err != nil {
		fmt.Fprintln(os.Stderr, "init: setup:", err)
		fmt.Println("err", oneLine(err.Error()))
		return 1
	}
	boot, err := mountpoints()
	if err != nil {
		fmt.Println("err", oneLine(err.Error()))
		return 1
	}
	s := &supervisor{cfg: cfg, exited: make(chan struct{})}
	close(s.exited) // nothing running yet
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, syscall.SIGCHLD)
	go func() {
		for range sigs {
			s.reap()
		}
	}()
	fmt.Println("ready")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		f := strings.Fields(in.Text())
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "start":
			fmt.Println(s.start())
		case "kill":
			fmt.Println(s.stop(syscall.SIGKILL, 30*time.Second))
		case "term":
			grace := 30 * time.Second
			if len(f) > 1 {
				if n, err := strconv.Atoi(f[1]); err == nil {
					grace = time.Duration(n) * time.Second
				}
			}
			fmt.Println(s.stop(syscall.SIGTERM, grace))
		case "status":
			fmt.Println(s.status())
		case "poweroff":
			fmt.Println(s.powerOff(boot))
		case "exit":
			fmt.Println("ok")
			return 0
		default:
			fmt.Println("err unknown command", f[0])
		}
	}
	return 0 // EOF: the test process is gone
}

// supervisor runs kedge as the init's child and reaps every orphan.
type supervisor struct {
	cfg    initConfig
	mu     sync.Mutex
	pid    int           // kedge's pid, 0 when not running
	last   string        // how the last kedge exited
	exited chan struct{} // closed when the current kedge has exited
}

func (s *supervisor) start() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pid != 0 {
		return fmt.Sprintf("err kedge is running (pid %d)", s.pid)
	}
	logf, err := os.OpenFile(s.cfg.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return "err " + oneLine(err.Error())
	}
	defer logf.Close()
	fmt.Fprintf(logf, startMarker+"%s starting %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(s.cfg.Argv, " "))
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return "err " + oneLine(err.Error())
	}
	defer devnull.Close()
	// The reaper holds s.mu, so it cannot reap this child before its pid
	// is recorded.
	p, err := os.StartProcess(s.cfg.Argv[0], s.cfg.Argv, &os.ProcAttr{
		Dir:   "/",
		Env:   s.cfg.Env,
		Files: []*os.File{devnull, logf, logf},
		Sys:   &syscall.SysProcAttr{Setsid: true},
	})
	if err != nil {
		return "err " + oneLine(err.Error())
	}
	s.pid = p.Pid
	_ = p.Release() // reaped by reap, not by os.Process.Wait
	s.exited = make(chan struct{})
	return fmt.Sprintf("ok %d", s.pid)
}

// stop sends sig to kedge and waits for it to exit; after grace it sends
// SIGKILL.
func (s *supervisor) stop(sig syscall.Signal, grace time.Duration) string {
	s.mu.Lock()
	pid, exited := s.pid, s.exited
	s.mu.Unlock()
	if pid == 0 {
		return "ok not-running"
	}
	_ = syscall.Kill(pid, sig)
	select {
	case <-exited:
	case <-time.After(grace):
		_ = syscall.Kill(pid, syscall.SIGKILL)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			return fmt.Sprintf("err kedge (pid %d) still running after SIGKILL", pid)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return "ok " + s.last
}

func (s *supervisor) status() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pid != 0 {
		return fmt.Sprintf("running %d", s.pid)
	}
	if s.last == "" {
		return "stopped never-started"
	}
	return "stopped " + s.last
}

// reap collects every exited child: kedge, and the orphans PID 1 inherits
// (containerd shims, whose parent kedge was).
func (s *supervisor) reap() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil || pid <= 0 {
			return
		}
		if pid == s.pid {
			s.pid = 0
			switch {
			case ws.Exited():
				s.last = fmt.Sprintf("exit=%d", ws.ExitStatus())
			case ws.Signaled():
				s.last = "signal=" + unix.SignalName(ws.Signal())
			default:
				s.last = "unknown"
			}
			close(s.exited)
		}
	}
}

func oneLine(s string) string { return strings.ReplaceAll(s, "\n", " ") }

// setupNode builds the node's mount table. The init was created in a new
// mount namespace, a copy of the host's; nothing done here propagates back.
func setupNode(cfg initConfig) error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make / rprivate: %w", err)
	}
	if err := unix.Sethostname([]byte(cfg.Hostname)); err != nil {
		return fmt.Errorf("sethostname: %w", err)
	}
	if err := detachForeignMounts(cfg.Keep); err != nil {
		return err
	}
	// /proc of the node's PID namespace: `kedge killall` and ps see only the
	// node's processes.
	if err := unix.Unmount("/proc", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach the host's /proc: %w", err)
	}
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount /proc: %w", err)
	}
	// /sys of the node's network namespace (/sys/class/net lists its
	// interfaces), with the host's cgroup hierarchies moved over.
	stash := filepath.Join(cfg.Dir, "stash")
	if err := overmount(stash, "/sys", []string{"/sys/fs/cgroup"}, func() error {
		if err := unix.Unmount("/sys", unix.MNT_DETACH); err != nil {
			return fmt.Errorf("detach the host's /sys: %w", err)
		}
		return unix.Mount("sysfs", "/sys", "sysfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
	}); err != nil {
		return fmt.Errorf("mount /sys: %w", err)
	}
	for _, target := range cfg.Overlays {
		if err := mountOverlay(cfg.Dir, stash, target); err != nil {
			return err
		}
	}
	for _, b := range cfg.Binds {
		if err := os.MkdirAll(b.Source, 0o755); err != nil {
			return err
		}
		if err := os.MkdirAll(b.Target, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(b.Source, b.Target, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind %s over %s: %w", b.Source, b.Target, err)
		}
	}
	if err := os.WriteFile("/etc/hostname", []byte(cfg.Hostname+"\n"), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile("/etc/machine-id", []byte(cfg.MachineID+"\n"), 0o444); err != nil {
		return err
	}
	return nil
}

// detachForeignMounts drops the node's copies of the host's network
// namespace files (nsfs: another node's pods' netns would stay alive as long
// as this node holds a copy) and of every mount below /run, /tmp and /var
// (pod volumes, container root filesystems and kubelet mounts of a kedge
// running on the host), deepest first. Mounts that hold a path in keep stay.
func detachForeignMounts(keep []string) error {
	mounts, err := mountinfo.GetMounts(nil)
	if err != nil {
		return fmt.Errorf("read mounts: %w", err)
	}
	var victims []string
	for _, m := range mounts {
		foreign := m.FSType == "nsfs"
		for _, root := range []string{"/run", "/tmp", "/var"} {
			if strings.HasPrefix(m.Mountpoint, root+"/") {
				foreign = true
			}
		}
		for _, k := range keep {
			if k == m.Mountpoint || strings.HasPrefix(k, m.Mountpoint+"/") {
				foreign = false
			}
		}
		if foreign {
			victims = append(victims, m.Mountpoint)
		}
	}
	sort.Slice(victims, func(i, j int) bool { return len(victims[i]) > len(victims[j]) })
	for _, mp := range victims {
		if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("detach %s: %w", mp, err)
		}
	}
	return nil
}

// mountOverlay makes target copy-on-write: an overlayfs whose lower layer is
// the host's target and whose upper layer is in the node's directory. Mounts
// below target (a container's bind-mounted /etc/hosts…) are carried over.
func mountOverlay(dir, stash, target string) error {
	name := strings.Trim(strings.ReplaceAll(target, "/", "-"), "-")
	upper := filepath.Join(dir, "overlay", name, "upper")
	work := filepath.Join(dir, "overlay", name, "work")
	for _, d := range []string{upper, work} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if strings.ContainsAny(target+upper+work, ",:") {
		return fmt.Errorf("overlay %s: paths must not contain ',' or ':'", target)
	}
	subs, err := topSubmounts(target)
	if err != nil {
		return err
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", target, upper, work)
	if err := overmount(stash, target, subs, func() error {
		return unix.Mount("overlay", target, "overlay", 0, opts)
	}); err != nil {
		return fmt.Errorf("overlay over %s: %w", target, err)
	}
	return nil
}

// topSubmounts lists the mount points strictly below root that are not
// below another one of them.
func topSubmounts(root string) ([]string, error) {
	mounts, err := mountinfo.GetMounts(mountinfo.PrefixFilter(root))
	if err != nil {
		return nil, fmt.Errorf("read mounts: %w", err)
	}
	var all []string
	for _, m := range mounts {
		if m.Mountpoint != root {
			all = append(all, m.Mountpoint)
		}
	}
	sort.Strings(all)
	var top []string
	for _, mp := range all {
		if len(top) > 0 && strings.HasPrefix(mp, top[len(top)-1]+"/") {
			continue
		}
		if len(top) > 0 && top[len(top)-1] == mp {
			continue
		}
		top = append(top, mp)
	}
	return top, nil
}

// overmount mounts something over target with mount, keeping the mounts
// subs (below target) reachable: they are moved aside (recursive bind into
// stash), and moved back on top afterwards.
func overmount(stash, target string, subs []string, mount func() error) error {
	type saved struct{ tmp, path string }
	var moved []saved
	for i, sub := range subs {
		fi, err := os.Stat(sub)
		if err != nil {
			return err
		}
		tmp := filepath.Join(stash, fmt.Sprintf("%s-%d", strings.Trim(strings.ReplaceAll(target, "/", "-"), "-"), i))
		if err := makeMountpoint(tmp, fi.IsDir()); err != nil {
			return err
		}
		if err := unix.Mount(sub, tmp, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("stash %s: %w", sub, err)
		}
		moved = append(moved, saved{tmp, sub})
	}
	if err := mount(); err != nil {
		return err
	}
	for _, m := range moved {
		fi, err := os.Stat(m.tmp)
		if err != nil {
			return err
		}
		if err := makeMountpoint(m.path, fi.IsDir()); err != nil {
			return err
		}
		if err := unix.Mount(m.tmp, m.path, "", unix.MS_MOVE, ""); err != nil {
			return fmt.Errorf("move %s back: %w", m.path, err)
		}
	}
	return nil
}

// makeMountpoint creates path as a directory, or as an empty file.
func makeMountpoint(path string, dir bool) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	if dir {
		return os.MkdirAll(path, 0o755)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	return f.Close()
}
