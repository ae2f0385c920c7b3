package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/kedge-io/kedge/tests/e2e/harness"
	"github.com/kedge-io/kedge/tests/e2e/linearize"
)

// linFault is a kind of fault of TestLinearizable: whom it hits, how it is
// injected and healed.
type linFault struct {
	name   string
	victim func(rng *rand.Rand, leader *harness.Node, servers []*harness.Node) *harness.Node
	inject func(*harness.Node)
	heal   func(*harness.Node)
}

func linLeader(_ *rand.Rand, leader *harness.Node, _ []*harness.Node) *harness.Node { return leader }

func linFollower(rng *rand.Rand, leader *harness.Node, servers []*harness.Node) *harness.Node {
	var f []*harness.Node
	for _, n := range servers {
		if n != leader {
			f = append(f, n)
		}
	}
	return f[rng.IntN(len(f))]
}

func linAnyServer(rng *rand.Rand, _ *harness.Node, servers []*harness.Node) *harness.Node {
	return servers[rng.IntN(len(servers))]
}

var linFaults = []linFault{
	{"kill-leader", linLeader, (*harness.Node).Kill, (*harness.Node).Start},
	{"kill-follower", linFollower, (*harness.Node).Kill, (*harness.Node).Start},
	{"partition-leader", linLeader, (*harness.Node).CutOff, (*harness.Node).Reconnect},
	{"partition-minority", linFollower, (*harness.Node).CutOff, (*harness.Node).Reconnect},
	{"graceful-restart", linAnyServer, func(n *harness.Node) { n.Stop() }, (*harness.Node).Start},
}

// linSchedule is the faults of cycles cycles: every kind once in each
// round of len(linFaults), in a random order.
func linSchedule(rng *rand.Rand, cycles int) []linFault {
	var out []linFault
	for len(out) < cycles {
		for _, i := range rng.Perm(len(linFaults)) {
			out = append(out, linFaults[i])
		}
	}
	return out[:cycles]
}

// linCycle is one fault as it happened; at and healed on the history's
// clock.
type linCycle struct {
	fault, victim string
	hold          time.Duration
	at, healed    int64
	healthy       time.Duration // from healing to healthy
	lostLease     []string      // servers that exited on a lost lease, restarted
}

// linLostLease is the log line of a kedge server that stops because its
// controller-manager or scheduler lost its leader lease.
var linLostLease = regexp.MustCompile(`msg="component failed, shutting down" err="[^"]*leader election lost[^"]*"`)

// linRestartAfterLostLease starts again, as its service manager would
// (install.sh: systemd Restart=always, RestartSec=5s), a server whose
// kedge stopped because a lease was lost, records it in run and returns
// its name. A kedge that exited for any other reason fails the test.
//
// A kedge bug, reported with TestLinearizable: a server cut off for a few
// seconds while its controller-manager holds the lease loses the lease
// (renew deadline 10 s, counting the catch-up after the partition), and
// kedge then stops the whole server, its etcd member, apiserver and node
// components included, where upstream loses only a controller-manager
// process. Until the controller-manager campaigns again in-process, the
// test does what systemd does.
func linRestartAfterLostLease(t *testing.T, servers []*harness.Node, run *linCycle) string {
	t.Helper()
	for _, n := range servers {
		if n.Running() {
			continue
		}
		log := n.LogSinceStart()
		if !linLostLease.MatchString(log) {
			t.Fatalf("server %s: kedge exited:\n%s", n.Name(), n.LogTail(3000))
		}
		t.Logf("KEDGE ISSUE: server %s stopped after losing a leader lease (%s); starting it again in 5 s as systemd would",
			n.Name(), linLostLease.FindString(log))
		run.lostLease = append(run.lostLease, n.Name())
		time.Sleep(5 * time.Second)
		n.Start()
		return n.Name()
	}
	return ""
}

func linIsLB(client string) bool { return strings.Contains(client, "-lb-") }

// linWaitHealthy waits until every server runs (see
// linRestartAfterLostLease), etcd has three healthy
// voters and one leader, every probe (each server's apiserver, the
// agent's load balancer) answers a quorum GET, and writes were
// acknowledged since the fault at since, through the load balancer too.
// It returns how long that took.
func linWaitHealthy(t *testing.T, c *harness.Cluster, servers []*harness.Node, probes map[string]*linearize.KubeStore, h *linearize.History, since int64, run *linCycle) time.Duration {
	t.Helper()
	begin := time.Now()
	c.Eventually(3*time.Minute, "the cluster healthy", func() error {
		if restarted := linRestartAfterLostLease(t, servers, run); restarted != "" {
			return fmt.Errorf("server %s restarted", restarted)
		}
		if err := etcdHealthy(servers); err != nil {
			return err
		}
		if got, err := etcdMembers(servers[0]); err != nil || strings.Join(got, ",") != linVoters {
			return fmt.Errorf("etcd members %v (%v), want %s", got, err, linVoters)
		}
		for name, p := range probes {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err := p.Do(ctx, linearize.Input{Kind: linearize.Get, Key: linPrefix + "-probe"})
			cancel()
			if err != nil {
				return fmt.Errorf("a GET through %s: %w", name, err)
			}
		}
		ops := h.Operations()
		if _, ok := linearize.FirstAck(ops, since, nil); !ok {
			return fmt.Errorf("no write acknowledged since the fault")
		}
		if _, ok := linearize.FirstAck(ops, since, linIsLB); !ok {
			return fmt.Errorf("no write acknowledged through the load balancer since the fault")
		}
		return nil
	})
	return time.Since(begin)
}

// linFailovers logs each cycle and, per kind of fault, the median and p99
// of the failover time: from the fault to the first acknowledged write
// (called after the fault), by any client and through the load balancer.
func linFailovers(t *testing.T, ops []porcupine.Operation, runs []linCycle) {
	t.Helper()
	type times struct{ any, lb, healthy []time.Duration }
	byKind := map[string]*times{}
	var lines []string
	lostLease := 0
	for i, r := range runs {
		tm := byKind[r.fault]
		if tm == nil {
			tm = &times{}
			byKind[r.fault] = tm
		}
		anyD, lbD := "-", "-"
		if at, ok := linearize.FirstAck(ops, r.at, nil); ok {
			d := time.Duration(at - r.at)
			tm.any, anyD = append(tm.any, d), d.Round(time.Millisecond).String()
		}
		if at, ok := linearize.FirstAck(ops, r.at, linIsLB); ok {
			d := time.Duration(at - r.at)
			tm.lb, lbD = append(tm.lb, d), d.Round(time.Millisecond).String()
		}
		tm.healthy = append(tm.healthy, r.healthy)
		line := fmt.Sprintf("%3d  %-18s %-6s hold %4.1fs  failover %9s (lb %9s)  healthy %5.1fs after healing",
			i+1, r.fault, r.victim, r.hold.Seconds(), anyD, lbD, r.healthy.Seconds())
		if len(r.lostLease) > 0 {
			line += fmt.Sprintf("  (%s stopped on a lost lease, restarted)", strings.Join(r.lostLease, ", "))
			lostLease += len(r.lostLease)
		}
		lines = append(lines, line)
	}
	if len(lines) == 0 {
		return
	}
	t.Logf("cycles:\n%s", strings.Join(lines, "\n"))
	if lostLease > 0 {
		t.Logf("KEDGE ISSUE: %d times a server stopped after losing a leader lease and was restarted (see linRestartAfterLostLease)", lostLease)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%-18s %3s  %21s  %21s  %21s\n", "fault", "n", "failover median/p99", "lb median/p99", "healthy median/p99")
	var all, allLB []time.Duration
	for _, f := range linFaults {
		tm := byKind[f.name]
		if tm == nil {
			continue
		}
		all, allLB = append(all, tm.any...), append(allLB, tm.lb...)
		fmt.Fprintf(&b, "%-18s %3d  %21s  %21s  %21s\n", f.name, len(tm.healthy), linMedP99(tm.any), linMedP99(tm.lb), linMedP99(tm.healthy))
	}
	fmt.Fprintf(&b, "%-18s %3d  %21s  %21s\n", "all", len(runs), linMedP99(all), linMedP99(allLB))
	t.Logf("failover (fault → first acknowledged write called after it; lb: by a client through the agent's load balancer) and time to healthy after healing:\n%s", b.String())
}

func linMedP99(ds []time.Duration) string {
	if len(ds) == 0 {
		return "-"
	}
	r := func(d time.Duration) string { return fmt.Sprintf("%.2fs", d.Seconds()) }
	return r(linearize.Percentile(ds, 50)) + " / " + r(linearize.Percentile(ds, 99))
}
