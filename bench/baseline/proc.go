package baseline

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// supervisor runs processes as systemd units would: each in its own process
// group, started once its condition holds (After=), restarted RestartDelay
// after it exits (Restart=always), its output appended to logs/<name>.log.
type supervisor struct {
	logDir string
	log    *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	pids     map[string]int // running process of each unit
	restarts map[string]int
	first    time.Time // first exec
	execd    chan struct{}
}

func newSupervisor(logDir string, log *slog.Logger) *supervisor {
	ctx, cancel := context.WithCancel(context.Background())
	return &supervisor{
		logDir: logDir, log: log, ctx: ctx, cancel: cancel,
		pids: map[string]int{}, restarts: map[string]int{}, execd: make(chan struct{}),
	}
}

// run starts s once after(ctx) returns nil (nil after: at once) and keeps it
// running until stop. The first process is exec'd before run returns when
// after is nil.
func (sv *supervisor) run(s spec, after func(context.Context) error) error {
	logFile, err := os.OpenFile(filepath.Join(sv.logDir, s.name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("baseline: log of %s: %w", s.name, err)
	}
	var first *exec.Cmd
	if after == nil {
		if first, err = sv.exec(s, logFile); err != nil {
			logFile.Close()
			return err
		}
	}
	sv.wg.Add(1)
	go func() {
		defer sv.wg.Done()
		defer logFile.Close()
		if first == nil {
			if err := after(sv.ctx); err != nil {
				if sv.ctx.Err() == nil {
					sv.log.Error("not started", "process", s.name, "err", err)
				}
				return
			}
		}
		cmd := first
		for {
			if cmd == nil {
				var err error
				if cmd, err = sv.exec(s, logFile); err != nil {
					sv.log.Error("exec", "process", s.name, "err", err)
				}
			}
			if cmd != nil {
				err := cmd.Wait()
				sv.mu.Lock()
				delete(sv.pids, s.name)
				sv.mu.Unlock()
				if sv.ctx.Err() != nil {
					return
				}
				sv.mu.Lock()
				sv.restarts[s.name]++
				sv.mu.Unlock()
				sv.log.Warn("exited, restarting", "process", s.name, "err", err, "in", RestartDelay)
				fmt.Fprintf(logFile, "\n=== baseline: %s exited (%v), restarting in %s ===\n", s.name, err, RestartDelay)
			}
			cmd = nil
			select {
			case <-sv.ctx.Done():
				return
			case <-time.After(RestartDelay):
			}
		}
	}()
	return nil
}

// exec starts one process of s in its own process group.
func (sv *supervisor) exec(s spec, logFile *os.File) (*exec.Cmd, error) {
	sv.mu.Lock()
	defer sv.mu.Unlock()
	if sv.ctx.Err() != nil {
		return nil, sv.ctx.Err()
	}
	cmd := exec.Command(s.path, s.args...)
	cmd.Env = append(os.Environ(), s.env...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("baseline: start %s: %w", s.name, err)
	}
	if sv.first.IsZero() {
		sv.first = time.Now()
		close(sv.execd)
	}
	sv.pids[s.name] = cmd.Process.Pid
	sv.log.Info("started", "process", s.name, "pid", cmd.Process.Pid)
	return cmd, nil
}

// firstExec returns when the first process was exec'd (zero before).
func (sv *supervisor) firstExec() time.Time {
	sv.mu.Lock()
	defer sv.mu.Unlock()
	return sv.first
}

// running returns the pid of every running process, by unit name.
func (sv *supervisor) running() map[string]int {
	sv.mu.Lock()
	defer sv.mu.Unlock()
	return maps.Clone(sv.pids)
}

// restartCounts returns how often each unit was restarted.
func (sv *supervisor) restartCounts() map[string]int {
	sv.mu.Lock()
	defer sv.mu.Unlock()
	return maps.Clone(sv.restarts)
}

// stopOrder is the order processes are stopped in, as systemd stops units
// in the reverse order of their dependencies: the node and controllers
// first, then the apiserver, etcd last. Processes not named here go first.
var stopOrder = [][]string{
	{"kubelet", "kube-proxy", "flanneld", "coredns", "kube-controller-manager", "kube-scheduler"},
	{"containerd"},
	{"kube-apiserver"},
	{"etcd"},
}

// stop ends the supervision and stops the processes in stopOrder: SIGTERM
// to each group of a phase, then a wait until they exited; SIGKILL to every
// process group left when timeout has passed since stop began.
func (sv *supervisor) stop(ctx context.Context, timeout time.Duration) error {
	sv.mu.Lock()
	sv.cancel() // under mu: no exec after this
	pids := make(map[string]int, len(sv.pids))
	for k, v := range sv.pids {
		pids[k] = v
	}
	sv.mu.Unlock()
	named := map[string]bool{}
	for _, phase := range stopOrder {
		for _, name := range phase {
			named[name] = true
		}
	}
	var first []string
	for name := range pids {
		if !named[name] {
			first = append(first, name)
		}
	}
	deadline := time.Now().Add(timeout)
	var err error
	for _, phase := range append([][]string{first}, stopOrder...) {
		begin := time.Now()
		for _, name := range phase {
			if pid, ok := pids[name]; ok {
				_ = syscall.Kill(-pid, syscall.SIGTERM)
			}
		}
		for err == nil && sv.anyRunning(phase) {
			if time.Now().After(deadline) {
				err = fmt.Errorf("baseline: %v still running %s after SIGTERM; killed", phase, timeout)
				break
			}
			if ctx.Err() != nil {
				err = ctx.Err()
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		sv.log.Info("stopped", "processes", phase, "took", time.Since(begin).Round(time.Millisecond))
	}
	// SIGKILL whatever is left of each group (also children a process
	// left behind in its group).
	for name, pid := range pids {
		if syscall.Kill(-pid, syscall.SIGKILL) == nil && err != nil {
			sv.log.Warn("killed", "process", name, "pid", pid)
		}
	}
	sv.wg.Wait()
	return err
}

// anyRunning says whether one of the named units has a running process.
func (sv *supervisor) anyRunning(names []string) bool {
	sv.mu.Lock()
	defer sv.mu.Unlock()
	for _, name := range names {
		if _, ok := sv.pids[name]; ok {
			return true
		}
	}
	return false
}
