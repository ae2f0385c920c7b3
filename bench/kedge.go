package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// KedgeRunDir is where a kedge node keeps its sockets (pkg/cli.RunDir); its
// shims are the ones whose -address lies below it.
const KedgeRunDir = "/run/kedge"

// ShimName is the process name of containerd's runc shim.
const ShimName = "containerd-shim-runc-v2"

// KedgeConfig says how to run one kedge process for a benchmark.
type KedgeConfig struct {
	Bin     string   // path of bin/kedge
	Dir     string   // working directory: data dir, kubeconfig, log; emptied on Start, removed on Stop
	Role    string   // "server" or "agent"
	Args    []string // extra flags, e.g. --disable-agent, or --server URL --token T for an agent
	Images  []string // image tarballs copied to <data-dir>/agent/images before exec (imported on start)
	AdminKC string   // for an agent: the server's admin kubeconfig, returned by Kubeconfig
	Log     io.Writer
}

// Kedge runs `kedge server` or `kedge agent` as a Setup.
type Kedge struct {
	cfg     KedgeConfig
	proc    ProcFS
	cmd     *exec.Cmd
	exec    time.Time
	exited  chan struct{}
	waitErr error
}

var _ Setup = (*Kedge)(nil)

// NewKedge returns a Setup that runs bin/kedge with cfg.
func NewKedge(cfg KedgeConfig) *Kedge {
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	return &Kedge{cfg: cfg, proc: ProcFS{Root: "/proc"}}
}

// Name is "kedge".
func (k *Kedge) Name() string { return "kedge" }

// DataDir is the --data-dir kedge runs with.
func (k *Kedge) DataDir() string { return filepath.Join(k.cfg.Dir, "data") }

// Kubeconfig is the admin kubeconfig kedge writes (a server), or the one
// the config names (an agent).
func (k *Kedge) Kubeconfig() string {
	if k.cfg.Role == "agent" {
		return k.cfg.AdminKC
	}
	return filepath.Join(k.cfg.Dir, "kedge.yaml")
}

// ExecTime is when kedge was exec'd.
func (k *Kedge) ExecTime() time.Time { return k.exec }

// Args returns kedge's command line after the binary.
func (k *Kedge) Args() []string {
	args := []string{k.cfg.Role, "--data-dir", k.DataDir(), "--config", filepath.Join(k.cfg.Dir, "none.yaml")}
	if k.cfg.Role == "server" {
		args = append(args, "--write-kubeconfig", k.Kubeconfig())
	}
	return append(args, k.cfg.Args...)
}

// Start prepares a fresh data dir (with the images to import) and execs kedge.
func (k *Kedge) Start(ctx context.Context) error {
	if err := os.RemoveAll(k.cfg.Dir); err != nil {
		return fmt.Errorf("kedge: %w", err)
	}
	images := filepath.Join(k.DataDir(), "agent", "images")
	if err := os.MkdirAll(images, 0o755); err != nil {
		return fmt.Errorf("kedge: %w", err)
	}
	// An empty config file, so that the host's /etc/kedge/config.yaml never leaks in.
	if err := os.WriteFile(filepath.Join(k.cfg.Dir, "none.yaml"), nil, 0o600); err != nil {
		return fmt.Errorf("kedge: %w", err)
	}
	for _, img := range k.cfg.Images {
		if err := copyFile(img, filepath.Join(images, filepath.Base(img))); err != nil {
			return fmt.Errorf("kedge: image: %w", err)
		}
	}
	// Not CommandContext: the process outlives Start and is stopped by Stop.
	k.cmd = exec.Command(k.cfg.Bin, k.Args()...)
	k.cmd.Stdout, k.cmd.Stderr = k.cfg.Log, k.cfg.Log
	k.exited = make(chan struct{})
	k.exec = time.Now()
	if err := k.cmd.Start(); err != nil {
		return fmt.Errorf("kedge: %w", err)
	}
	go func() { k.waitErr = k.cmd.Wait(); close(k.exited) }()
	return nil
}

// Exited is closed when the kedge process has exited.
func (k *Kedge) Exited() <-chan struct{} { return k.exited }

// PIDs returns kedge, its child processes and the containerd shims of its
// containerd (found by their -address below KedgeRunDir, in this mount
// namespace), without the containers below the shims.
func (k *Kedge) PIDs() ([]int, error) {
	if k.cmd == nil || k.cmd.Process == nil {
		return nil, errors.New("kedge: not started")
	}
	select {
	case <-k.exited:
		return nil, fmt.Errorf("kedge: exited: %v", k.waitErr)
	default:
	}
	procs, err := k.proc.Processes()
	if err != nil {
		return nil, err
	}
	return SetupPIDs(procs, []int{k.cmd.Process.Pid}, KedgeRunDir+"/"), nil
}

// SetupPIDs returns roots, their descendants and the runc shims whose
// containerd -address starts with addrPrefix and that share the first
// live root's mount namespace, each shim without its subtree (the containers),
// sorted and without duplicates. Both the kedge and the baseline setups use it.
func SetupPIDs(procs map[int]Process, roots []int, addrPrefix string) []int {
	seen := map[int]bool{}
	var mnt string
	for _, r := range roots {
		if _, ok := procs[r]; !ok {
			continue
		}
		if mnt == "" {
			mnt = procs[r].MntNS
		}
		seen[r] = true
		for _, d := range Descendants(procs, r, IsShim) {
			seen[d] = true
		}
	}
	if len(seen) == 0 {
		return nil // the setup is gone, shims or not
	}
	for _, p := range procs {
		if IsShim(p) && p.MntNS == mnt && strings.HasPrefix(shimAddress(p.Argv), addrPrefix) {
			seen[p.PID] = true
		}
	}
	return sortedKeys(seen)
}

// IsShim reports whether p is a containerd runc shim.
func IsShim(p Process) bool {
	return len(p.Argv) > 0 && filepath.Base(p.Argv[0]) == ShimName
}

// shimAddress returns the value of a shim's -address flag.
func shimAddress(argv []string) string {
	for i, a := range argv {
		if (a == "-address" || a == "--address") && i+1 < len(argv) {
			return argv[i+1]
		}
		if v, ok := strings.CutPrefix(a, "-address="); ok {
			return v
		}
	}
	return ""
}

// Stop sends SIGTERM, waits up to 30 s (then SIGKILL), runs `kedge killall`
// on the data dir (pods, mounts, interfaces, iptables rules) and removes
// the working directory. Note that killall stops every kedge server and
// agent of this mount namespace, so an agent's Stop stops its server too.
func (k *Kedge) Stop(ctx context.Context) error {
	var errs []error
	if k.cmd != nil && k.cmd.Process != nil {
		select {
		case <-k.exited:
		default:
			_ = k.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-k.exited:
			case <-time.After(30 * time.Second):
				errs = append(errs, errors.New("kedge: still running 30s after SIGTERM, killed"))
				_ = k.cmd.Process.Kill()
				<-k.exited
			}
		}
	}
	cmd := exec.CommandContext(ctx, k.cfg.Bin, "killall", "--data-dir", k.DataDir())
	cmd.Stdout, cmd.Stderr = k.cfg.Log, k.cfg.Log
	if err := cmd.Run(); err != nil {
		errs = append(errs, fmt.Errorf("kedge killall: %w", err))
	}
	if err := os.RemoveAll(k.cfg.Dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func sortedKeys(m map[int]bool) []int {
	out := make([]int, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Ints(out)
	return out
}
