package bench

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// The rows of a restart: the same kedge server stopped (SIGTERM) once its
// first pod runs and exec'd again on the same, warm data dir.
var (
	MetricRestartAPI  = Metric{Name: "restart with pods: exec → API ready", Unit: "s", Decimals: 2}
	MetricRestartNode = Metric{Name: "restart with pods: exec → node Ready", Unit: "s", Decimals: 2}
)

// RunRestart starts k on a fresh data dir, waits for its first pod, stops
// it with SIGTERM (as a service manager does; the pod's containers keep
// running), execs it again on the same data dir and measures that start:
// the API ready and the node Ready as reported by the new process's
// kubelet (a Ready heartbeat after the exec). It stops k at the end.
func RunRestart(ctx context.Context, k *Kedge, p Plan, r *Results) (err error) {
	log := p.Log.With("setup", k.Name(), "part", "restart")
	stop, err := start(ctx, log, k, k.Name())
	if err != nil {
		return err
	}
	defer stop(&err)
	if _, err := WaitStart(ctx, k, StartWait{PodImage: p.Image, Exited: k.Exited()}); err != nil {
		return err
	}
	log.Info("first start up; restarting")
	if err := k.restart(ctx); err != nil {
		return err
	}
	st, err := waitRestart(ctx, k)
	if err != nil {
		return err
	}
	log.Info("restarted", "api", st.APIReady, "node", st.NodeReady)
	r.Add(MetricRestartAPI, k.Name(), st.APIReady.Seconds())
	r.Add(MetricRestartNode, k.Name(), st.NodeReady.Seconds())
	return nil
}

// restart stops the kedge process with SIGTERM and execs it again with the
// same data dir, after the next second boundary: the Node's heartbeats
// have a resolution of one second, so that one at or after the exec's
// second comes from the new process.
func (k *Kedge) restart(ctx context.Context) error {
	if k.cmd == nil || k.cmd.Process == nil {
		return errors.New("kedge: not started")
	}
	_ = k.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-k.exited:
	case <-time.After(30 * time.Second):
		return errors.New("kedge: still running 30s after SIGTERM")
	case <-ctx.Done():
		return ctx.Err()
	}
	if err := sleep(ctx, time.Until(time.Now().Truncate(time.Second).Add(time.Second))); err != nil {
		return err
	}
	k.cmd = exec.Command(k.cfg.Bin, k.Args()...)
	k.cmd.Stdout, k.cmd.Stderr = k.cfg.Log, k.cfg.Log
	k.exited = make(chan struct{})
	k.exec = time.Now()
	if err := k.cmd.Start(); err != nil {
		return fmt.Errorf("kedge: %w", err)
	}
	cmd, exited := k.cmd, k.exited
	go func() { k.waitErr = cmd.Wait(); close(exited) }()
	return nil
}

// waitRestart polls, from k's exec on, until the API is ready and the Node
// has a Ready heartbeat from the new process.
func waitRestart(ctx context.Context, k *Kedge) (StartTimes, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	execSecond := k.ExecTime().Truncate(time.Second)
	var t StartTimes
	var cs *kubernetes.Clientset
	var lastErr error
	for {
		since := time.Since(k.ExecTime())
		switch {
		case cs == nil:
			cs, lastErr = clientFor(k.Kubeconfig())
		case t.APIReady == 0:
			if lastErr = readyz(ctx, cs); lastErr == nil {
				t.APIReady = since
			}
		default:
			var ok bool
			if ok, lastErr = readySince(ctx, cs, execSecond); ok {
				t.NodeReady = since
				return t, nil
			}
		}
		select {
		case <-ctx.Done():
			return t, fmt.Errorf("kedge: not up again (api %v, node %v); last error: %v", t.APIReady, t.NodeReady, lastErr)
		case <-k.Exited():
			return t, errors.New("kedge: exited while restarting")
		case <-time.After(PollInterval):
		}
	}
}

// readySince reports whether a node is Ready with a heartbeat at or after since.
func readySince(ctx context.Context, cs kubernetes.Interface, since time.Time) (bool, error) {
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return false, err
	}
	for _, n := range nodes.Items {
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue && !c.LastHeartbeatTime.Time.Before(since) {
				return true, nil
			}
		}
	}
	return false, errors.New("no Ready heartbeat since the restart yet")
}
