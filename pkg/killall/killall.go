// Package killall undoes what a kedge node leaves behind when it stops: the
// pods' containers (kedge, like k3s, leaves them running across restarts),
// their mounts and network namespaces, the pod network interfaces and the
// iptables rules of kube-proxy, flannel and the CNI plugins.
//
//	err := killall.Run(ctx, killall.Config{DataDir: "/var/lib/kedge", RunDir: "/run/kedge", Log: log})
package killall

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
)

// Config says where the node's state is.
type Config struct {
	DataDir    string   // --data-dir
	RunDir     string   // /run/kedge
	KubeletDir string   // the kubelet's root dir, whose pod volume mounts go too
	Links      []string // interfaces to delete; default cni0, flannel.1, flannel-v6.1
	// ContainerdAddress, when set, limits the shims stopped to those of the
	// containerd at this address (their -address argument); empty: every
	// shim of this mount namespace.
	ContainerdAddress string
	// KeepKedge leaves `kedge server` and `kedge agent` processes running:
	// for cleaning up after another node that ran beside a kedge control
	// plane (the benchmark's baseline).
	KeepKedge bool
	Log       *slog.Logger
}

// CNINetworkDir holds host-local's address reservations of kedge's pod
// network (the bridge CNI configuration's name is "kedge").
const CNINetworkDir = "/var/lib/cni/networks/kedge"

// Shim is the process name of containerd's runc shim (the standalone
// executable in the extracted assets' bin directory).
const Shim = "containerd-shim-runc-v2"

// chainPrefixes are the iptables chains and rules kedge's node components own.
var chainPrefixes = []string{"KUBE-", "CNI-", "FLANNEL"}

// Run stops every kedge process and container on the node and cleans up.
// It keeps going after a failed step and returns all errors joined.
func Run(ctx context.Context, cfg Config) error {
	if len(cfg.Links) == 0 {
		cfg.Links = []string{"cni0", "flannel.1", "flannel-v6.1"}
	}
	var errs []error
	stopped := 0
	if !cfg.KeepKedge {
		stopped = stopProcesses(ctx, cfg.Log, isKedgeDaemon, "kedge server/agent", 10*time.Second)
	}
	shim := isShim
	if cfg.ContainerdAddress != "" {
		shim = func(argv []string) bool { return IsShimOf(argv, cfg.ContainerdAddress) }
	}
	shims := stopProcesses(ctx, cfg.Log, shim, "container shims and their containers", 5*time.Second)
	cfg.Log.Info("processes stopped", "kedge", stopped, "shims", shims)
	roots := []string{cfg.DataDir, cfg.RunDir, cfg.KubeletDir, "/run/netns"}
	if n, err := unmountUnder(roots); err != nil {
		errs = append(errs, err)
	} else {
		cfg.Log.Info("unmounted", "mounts", n)
	}
	// The pods' network namespace files, now unmounted (CNI names them cni-*).
	netns, _ := filepath.Glob("/run/netns/cni-*")
	for _, f := range netns {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove %s: %w", f, err))
		}
	}
	for _, name := range cfg.Links {
		link, err := netlink.LinkByName(name)
		if err != nil {
			continue // not there
		}
		if err := netlink.LinkDel(link); err != nil {
			errs = append(errs, fmt.Errorf("delete interface %s: %w", name, err))
		} else {
			cfg.Log.Info("deleted interface", "name", name)
		}
	}
	for _, tool := range []string{"iptables", "ip6tables"} {
		if err := flushRules(ctx, tool); err != nil {
			errs = append(errs, err)
		}
	}
	// host-local's reservations of the pods that are gone (they got no CNI
	// DEL): left, they would leak the node's pod addresses.
	if err := os.RemoveAll(CNINetworkDir); err != nil {
		errs = append(errs, err)
	}
	// The runtime state of what was just stopped (sockets, the shims' task
	// directories), as a reboot clears it: left, the next containerd tries
	// to load every old task and logs an error for each.
	if !cfg.KeepKedge && cfg.RunDir != "" {
		if err := os.RemoveAll(cfg.RunDir); err != nil {
			errs = append(errs, fmt.Errorf("remove %s: %w", cfg.RunDir, err))
		} else {
			cfg.Log.Info("removed the runtime state", "dir", cfg.RunDir)
		}
	}
	return errors.Join(errs...)
}

// isKedgeDaemon matches `kedge server` and `kedge agent` processes other than this one.
func isKedgeDaemon(argv []string) bool {
	return len(argv) >= 2 && filepath.Base(argv[0]) == "kedge" && (argv[1] == "server" || argv[1] == "agent")
}

func isShim(argv []string) bool {
	return len(argv) > 0 && filepath.Base(argv[0]) == Shim
}

// IsShimOf says whether argv is a containerd runc shim of the containerd at
// address (its -address argument).
func IsShimOf(argv []string, address string) bool {
	if !isShim(argv) {
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

// stopProcesses sends SIGTERM to every process of this mount namespace that
// matches, and to their descendants (for shims: the containers), waits up to grace and SIGKILLs
// what is left. It returns how many processes matched.
func stopProcesses(ctx context.Context, log *slog.Logger, match func([]string) bool, what string, grace time.Duration) int {
	procs := processes()
	self, _ := os.Readlink("/proc/self/ns/mnt")
	var targets []int
	for pid, p := range procs {
		// Only this node's: a process in another mount namespace belongs to
		// another node on the same machine (a test harness) or a container.
		mnt, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", pid))
		if pid != os.Getpid() && mnt == self && match(p.argv) {
			targets = append(targets, pid)
			targets = append(targets, descendants(procs, pid)...)
		}
	}
	if len(targets) == 0 {
		return 0
	}
	log.Info("stopping "+what, "pids", len(targets))
	for _, pid := range targets {
		_ = syscall.Kill(pid, syscall.SIGTERM)
	}
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		alive := 0
		for _, pid := range targets {
			if syscall.Kill(pid, 0) == nil && !zombie(pid) {
				alive++
			}
		}
		if alive == 0 {
			return len(targets)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, pid := range targets {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	return len(targets)
}

type process struct {
	ppid int
	argv []string
}

// processes reads every process's parent and command line from /proc.
func processes() map[int]process {
	out := map[int]process{}
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
		if len(fields) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(fields[1])
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		argv := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
		out[pid] = process{ppid: ppid, argv: argv}
	}
	return out
}

func descendants(procs map[int]process, root int) []int {
	var out []int
	for pid, p := range procs {
		if p.ppid == root {
			out = append(out, pid)
			out = append(out, descendants(procs, pid)...)
		}
	}
	return out
}

func zombie(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(stat)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(fields) > 0 && fields[0] == "Z"
}

// unmountUnder lazily unmounts every mount point below one of roots,
// deepest first, and returns how many it unmounted. A root that is a mount
// point itself is unmounted only when it is a bind mount of itself (the
// kubelet makes /var/lib/kubelet one, for mount propagation):
// /var/lib/kedge on a partition of its own, or bound from elsewhere, is the
// machine's, not kedge's (unmounting it would make the next start write
// into the directory underneath).
func unmountUnder(roots []string) (int, error) {
	var clean []string
	for _, r := range roots {
		if r != "" {
			clean = append(clean, filepath.Clean(r))
		}
	}
	mounts, err := mountinfo.GetMounts(func(m *mountinfo.Info) (skip, stop bool) {
		return !below(m.Mountpoint, clean) && !(slices.Contains(clean, m.Mountpoint) && selfBind(m)), false
	})
	if err != nil {
		return 0, fmt.Errorf("read mounts: %w", err)
	}
	sort.Slice(mounts, func(i, j int) bool { return len(mounts[i].Mountpoint) > len(mounts[j].Mountpoint) })
	var errs []error
	n := 0
	for _, m := range mounts {
		if err := unix.Unmount(m.Mountpoint, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", m.Mountpoint, err))
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

// flushRules removes every rule and chain whose name starts with one of
// chainPrefixes, by rewriting the ruleset without them (iptables-save |
// filter | iptables-restore), the way kube-proxy's own cleanup does.
func flushRules(ctx context.Context, tool string) error {
	save, err := exec.LookPath(tool + "-save")
	if err != nil {
		return nil // no iptables on this host: nothing of ours there
	}
	out, err := exec.CommandContext(ctx, save).Output()
	if err != nil {
		return fmt.Errorf("%s-save: %w", tool, err)
	}
	filtered := FilterRules(string(out))
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

// FilterRules drops from iptables-save output every chain declaration and
// rule that mentions one of kedge's chain prefixes.
func FilterRules(save string) string {
	var b strings.Builder
	for _, line := range strings.SplitAfter(save, "\n") {
		owned := false
		for _, p := range chainPrefixes {
			if strings.HasPrefix(line, ":"+p) || (strings.HasPrefix(line, "-A ") && strings.Contains(line, p)) {
				owned = true
				break
			}
		}
		if !owned {
			b.WriteString(line)
		}
	}
	return b.String()
}

// selfBind reports whether m shows its file system at the path it is
// mounted on: a directory bound onto itself (on the root file system, or on
// a partition mounted above it).
func selfBind(m *mountinfo.Info) bool {
	return m.Root != "/" && strings.HasSuffix(m.Mountpoint, m.Root)
}

// below reports whether path is strictly below one of roots (cleaned).
func below(path string, roots []string) bool {
	for _, r := range roots {
		if path != r && strings.HasPrefix(path, strings.TrimSuffix(r, "/")+"/") {
			return true
		}
	}
	return false
}
