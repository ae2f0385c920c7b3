package baseline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/moby/sys/mountinfo"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/kedge-io/kedge/pkg/killall"
)

// cleanup undoes what the node leaves behind once its processes are gone,
// as `kedge killall` does for kedge: the containerd shims of this node's
// containerd (found by their -address) and the containers under them, the
// mounts under the node's directories, the pods' network namespace files,
// cni0 and flannel.1, the KUBE-/CNI-/FLANNEL iptables rules and host-local's
// address reservations of the pod network. pkg/killall itself would also
// stop every kedge server and agent of this mount namespace, which must keep
// running when a baseline Node runs beside a kedge server.
type cleanup struct {
	containerdAddress string
	roots             []string // directories whose mounts go
	log               *slog.Logger
}

func (c cleanup) run(ctx context.Context) error {
	var errs []error
	shims := c.shims()
	if len(shims) > 0 {
		c.log.Info("stopping shims and their containers", "pids", len(shims))
		signalAll(shims, syscall.SIGTERM)
		waitGone(ctx, shims, 5*time.Second)
		signalAll(shims, syscall.SIGKILL)
		waitGone(ctx, shims, 2*time.Second)
	}
	if err := unmountUnder(append(slices.Clone(c.roots), "/run/netns")); err != nil {
		errs = append(errs, err)
	}
	netns, _ := filepath.Glob("/run/netns/cni-*")
	for _, f := range netns {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	for _, name := range []string{"cni0", "flannel.1"} {
		if link, err := netlink.LinkByName(name); err == nil {
			if err := netlink.LinkDel(link); err != nil {
				errs = append(errs, fmt.Errorf("delete interface %s: %w", name, err))
			}
		}
	}
	for _, tool := range []string{"iptables", "ip6tables"} {
		if err := filterRules(ctx, tool); err != nil {
			errs = append(errs, err)
		}
	}
	// host-local keeps the addresses of pods that got no CNI DEL.
	if err := os.RemoveAll("/var/lib/cni/networks/kedge"); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// shims returns the pids of this node's containerd shims (the processes
// whose command line names its containerd's socket) and of everything
// under them.
func (c cleanup) shims() []int {
	procs := processTable()
	var out []int
	for pid, p := range procs {
		if isShimOf(p.argv, c.containerdAddress) {
			out = append(out, pid)
			out = append(out, descendants(procs, pid)...)
		}
	}
	return out
}

// isShimOf says whether argv is a containerd-shim-runc-v2 of the containerd at address.
func isShimOf(argv []string, address string) bool {
	if len(argv) == 0 || filepath.Base(argv[0]) != killall.Shim {
		return false
	}
	for i, a := range argv {
		if (a == "-address" || a == "--address") && i+1 < len(argv) && argv[i+1] == address {
			return true
		}
		if a == "-address="+address || a == "--address="+address {
			return true
		}
	}
	return false
}

type procInfo struct {
	ppid int
	argv []string
}

// processTable reads every process's parent and command line from /proc.
func processTable() map[int]procInfo {
	out := map[int]procInfo{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(stat)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(fields) < 2 || fields[0] == "Z" {
			continue
		}
		ppid, _ := strconv.Atoi(fields[1])
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		out[pid] = procInfo{ppid: ppid, argv: strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")}
	}
	return out
}

func descendants(procs map[int]procInfo, root int) []int {
	var out []int
	for pid, p := range procs {
		if p.ppid == root {
			out = append(out, pid)
			out = append(out, descendants(procs, pid)...)
		}
	}
	return out
}

func signalAll(pids []int, sig syscall.Signal) {
	for _, pid := range pids {
		_ = syscall.Kill(pid, sig)
	}
}

// alive says whether pid runs (not a zombie).
func alive(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(stat)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(fields) > 0 && fields[0] != "Z"
}

func waitGone(ctx context.Context, pids []int, d time.Duration) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if !slices.ContainsFunc(pids, alive) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// unmountUnder lazily unmounts every mount point at or below one of roots,
// deepest first.
func unmountUnder(roots []string) error {
	var clean []string
	for _, r := range roots {
		if r != "" {
			clean = append(clean, filepath.Clean(r))
		}
	}
	mounts, err := mountinfo.GetMounts(func(m *mountinfo.Info) (skip, stop bool) {
		for _, r := range clean {
			if m.Mountpoint == r || strings.HasPrefix(m.Mountpoint, r+"/") {
				return false, false
			}
		}
		return true, false
	})
	if err != nil {
		return fmt.Errorf("read mounts: %w", err)
	}
	sort.Slice(mounts, func(i, j int) bool { return len(mounts[i].Mountpoint) > len(mounts[j].Mountpoint) })
	var errs []error
	for _, m := range mounts {
		if err := unix.Unmount(m.Mountpoint, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", m.Mountpoint, err))
		}
	}
	return errors.Join(errs...)
}

// filterRules rewrites the ruleset without the KUBE-, CNI- and FLANNEL
// chains and rules (killall.FilterRules).
func filterRules(ctx context.Context, tool string) error {
	save, err := exec.LookPath(tool + "-save")
	if err != nil {
		return nil
	}
	out, err := exec.CommandContext(ctx, save).Output()
	if err != nil {
		return fmt.Errorf("%s-save: %w", tool, err)
	}
	filtered := killall.FilterRules(string(out))
	if filtered == string(out) {
		return nil
	}
	restore := exec.CommandContext(ctx, tool+"-restore")
	restore.Stdin = strings.NewReader(filtered)
	if msg, err := restore.CombinedOutput(); err != nil {
		return fmt.Errorf("%s-restore: %w: %s", tool, err, msg)
	}
	return nil
}
