package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kedge-io/kedge/tests/e2e/harness"
	"github.com/kedge-io/kedge/tests/e2e/linearize"
)

// TestLinearizable (issue 14, part 2): three servers and an agent; clients
// create, read (quorum GET) and compare-and-swap ConfigMaps, two through
// the agent's load balancer (127.0.0.1:6444 in the agent's network
// namespace) and one on each server's own apiserver (127.0.0.1:6443 in the
// server's namespace, so it keeps talking to its server when that one is
// cut off). Faults are cycled: kill -9 of the etcd leader and of a
// follower, a network partition of the leader and of a minority (one
// follower), a graceful restart; each is held a few seconds, healed, and
// the cluster must be healthy again (three healthy voters, every apiserver
// and the load balancer answering, a write acknowledged since the fault).
// At the end porcupine checks the whole history (0 violations) and every
// acknowledged write must be in the final state or overwritten.
//
// KEDGE_ROBUSTNESS_CYCLES (default 5) and KEDGE_ROBUSTNESS_SEED (default:
// the clock; always logged) replay a run's faults and the clients' choices.
// With KEDGE_E2E_LOGS set, the history is saved beside the node logs
// (history.jsonl: go test ./tests/e2e/linearize -run TestSavedHistory with
// KEDGE_LINEARIZE_HISTORY=<file> checks it again), and a violation leaves
// linearizability.html, porcupine's visualization of the keys concerned.
func TestLinearizable(t *testing.T) {
	cycles, seed := robustnessSettings(t, "KEDGE_ROBUSTNESS_CYCLES")
	rng := rand.New(rand.NewPCG(seed, 0))
	c := harness.NewCluster(t)
	var a, b, cc, w *harness.Node
	c.Step("start server a", func() {
		a = c.AddNode("a")
		a.Start()
		a.WaitReady(5 * time.Minute)
	})
	token := joinToken(t, a)
	aURL := "https://" + a.IP().String() + ":6443"
	c.Step("servers b and c join a; three voting members", func() {
		for _, name := range []string{"b", "c"} {
			n := c.AddNode(name, "--server", aURL, "--token", token)
			n.Start()
			n.WaitReady(5 * time.Minute)
			if name == "b" {
				b = n
			} else {
				cc = n
			}
		}
		waitVoters(c, a, linVoters, 2*time.Minute)
	})
	c.Step("agent w joins a, Ready", func() {
		w = c.AddNode("w", "agent", "--server", aURL, "--token", token)
		w.Start()
		waitNodeReady(c, a, w, 5*time.Minute)
	})
	servers := []*harness.Node{a, b, cc}

	kubeconfig, err := os.ReadFile(filepath.Join(a.Dir(), "etc-kedge", "kedge.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	base, err := clientcmd.RESTConfigFromKubeConfig(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	// store is a client of its own (its own connection) from inside node n.
	store := func(n *harness.Node, addr, name string) *linearize.KubeStore {
		cfg := rest.CopyConfig(base)
		cfg.Host = "https://" + addr
		cfg.Dial = n.DialContext
		cfg.UserAgent = "kedge-e2e-linearizable/" + name
		s, err := linearize.NewKubeStore(cfg, "default", linPrefix)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	var clients []linearize.Client
	for i := range linLBClients {
		name := fmt.Sprintf("%s-lb-%d", w.Name(), i)
		clients = append(clients, linearize.Client{Name: name, Store: store(w, linLBAddress, name)})
	}
	probes := map[string]*linearize.KubeStore{w.Name() + "-lb": store(w, linLBAddress, "probe-lb")}
	for _, n := range servers {
		clients = append(clients, linearize.Client{Name: n.Name(), Store: store(n, linAPIAddress, n.Name())})
		probes[n.Name()] = store(n, linAPIAddress, "probe-"+n.Name())
	}

	h := linearize.NewHistory()
	wl := linearize.New(linearize.Config{Clients: clients, Prefix: linPrefix, Seed: seed, Timeout: linTimeout, Think: linThink}, h)
	ctx, cancel := context.WithCancel(context.Background())
	running := make(chan struct{})
	go func() { defer close(running); wl.Run(ctx) }()
	stop := sync.OnceFunc(func() { cancel(); <-running })
	defer stop()
	var runs []linCycle
	analyzed := false
	defer func() {
		if !analyzed && t.Failed() { // a fault the cluster did not heal from: check what was recorded
			stop()
			linAnalyze(t, seed, h, nil, runs)
		}
	}()

	c.Step("every client's writes are acknowledged", func() {
		c.Eventually(2*time.Minute, "an acknowledged write by every client", func() error {
			ops := h.Operations()
			for _, cl := range clients {
				if _, ok := linearize.FirstAck(ops, 0, func(n string) bool { return n == cl.Name }); !ok {
					return fmt.Errorf("none by %s yet: %s", cl.Name, h.Stats())
				}
			}
			return nil
		})
	})
	for i, f := range linSchedule(rng, cycles) {
		run := linCycle{fault: f.name}
		c.Step(fmt.Sprintf("cycle %d/%d: %s", i+1, cycles, f.name), func() {
			var leader *harness.Node
			c.Eventually(time.Minute, "the etcd leader", func() (err error) {
				if restarted := linRestartAfterLostLease(t, servers, &run); restarted != "" {
					return fmt.Errorf("server %s restarted", restarted)
				}
				leader, err = etcdLeader(servers)
				return err
			})
			victim := f.victim(rng, leader, servers)
			hold := linHoldMin + time.Duration(rng.Int64N(int64(linHoldMax-linHoldMin)))
			run.victim, run.hold = victim.Name(), hold
			run.at = h.Now()
			f.inject(victim)
			time.Sleep(hold)
			f.heal(victim)
			run.healed = h.Now()
			run.healthy = linWaitHealthy(t, c, servers, probes, h, run.at, &run)
			t.Logf("cycle %d/%d: %s of %s (leader %s) held %s; healthy %s after healing; %s",
				i+1, cycles, f.name, victim.Name(), leader.Name(), hold.Round(100*time.Millisecond), run.healthy.Round(100*time.Millisecond), h.Stats())
		})
		runs = append(runs, run)
	}
	stop()

	var final map[string]linearize.Final
	c.Step("final state: a quorum GET of every key, and a LIST", func() {
		final = linFinal(t, c, h, len(clients), probes[a.Name()], wl.Keys())
	})
	analyzed = true
	linAnalyze(t, seed, h, final, runs)
}

// The workload's shape: clients through the agent's load balancer (one
// more on each server), an operation's timeout (then it is Unknown; a
// client blocked in a call made before a fault adds up to that much to the
// failover it measures), the pause between operations, and how long a
// fault is held.
const (
	linPrefix              = "lin"
	linLBClients           = 2
	linTimeout             = 2 * time.Second
	linThink               = 20 * time.Millisecond
	linHoldMin, linHoldMax = 3 * time.Second, 7 * time.Second
	linVoters              = "a voter,b voter,c voter"
	// Where the clients connect, inside a node: the agent's load balancer
	// (agent.LoadBalancerAddress: pkg/agent is not linked into the tests)
	// and a server's own apiserver.
	linLBAddress  = "127.0.0.1:6444"
	linAPIAddress = "127.0.0.1:6443"
)

// linFinal reads every key through reader (quorum GETs, recorded in the
// history as client "final", clientID) and LISTs them; a key missing from the
// list is absent. A GET and the LIST that disagree fail the test.
func linFinal(t *testing.T, c *harness.Cluster, h *linearize.History, clientID int, reader *linearize.KubeStore, keys []string) map[string]linearize.Final {
	t.Helper()
	got := map[string]linearize.Output{}
	for _, key := range keys {
		in := linearize.Input{Kind: linearize.Get, Key: key}
		c.Eventually(time.Minute, "a quorum GET of "+key, func() error {
			call := h.Begin(clientID, "final", in)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			out, err := reader.Do(ctx, in)
			call.End(out, err) // an error: Unknown, dropped
			got[key] = out
			return err
		})
	}
	var list map[string]linearize.Final
	c.Eventually(time.Minute, "a LIST of the workload's ConfigMaps", func() (err error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		list, err = reader.List(ctx)
		return err
	})
	final := map[string]linearize.Final{}
	for _, key := range keys {
		final[key] = list[key]
		g := got[key]
		if exists := g.Status == linearize.OK; exists != list[key].Exists || g.Value != list[key].Value {
			t.Errorf("%s: GET says %s %q, LIST says exists=%v %q", key, g.Status, g.Value, list[key].Exists, list[key].Value)
		}
	}
	return final
}

// linAnalyze checks the history (and, with final, the lost writes) and
// reports: the history's size, the failover times per fault, the
// violations. A violation leaves the visualization in KEDGE_E2E_LOGS.
func linAnalyze(t *testing.T, seed uint64, h *linearize.History, final map[string]linearize.Final, runs []linCycle) {
	t.Helper()
	ops := h.Operations()
	t.Logf("history: %s", h.Stats())
	linFailovers(t, ops, runs)
	res := linearize.Check(ops, 15*time.Minute)
	t.Logf("porcupine: %s in %s; %d linearizability violations", res.Result, res.Duration.Round(time.Millisecond), len(res.Illegal))
	var lost []string
	if final != nil {
		lost = linearize.LostWrites(ops, final)
		t.Logf("lost writes: %d", len(lost))
	}
	for i, k := range res.Illegal {
		if i < 3 {
			t.Errorf("not linearizable: %s; its operations (call, return on the history's clock):\n%s", k, linTail(linearize.Explain(ops, k), 80))
		}
	}
	for i, l := range lost {
		if i < 20 {
			t.Errorf("lost write: %s", l)
		}
	}
	if res.Result == porcupine.Unknown {
		t.Errorf("porcupine did not finish in time: no verdict on %d operations", len(ops))
	}
	if len(res.Illegal) > 0 || len(lost) > 0 {
		t.Errorf("KEDGE_ROBUSTNESS_SEED=%d replays this run's faults: %d violations, %d lost writes", seed, len(res.Illegal), len(lost))
	}
	dir := os.Getenv("KEDGE_E2E_LOGS")
	if dir == "" {
		if t.Failed() {
			t.Log("set KEDGE_E2E_LOGS to keep the history and the visualization of its violations")
		}
		return
	}
	dir = filepath.Join(dir, t.Name())
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Error(err)
		return
	}
	path := filepath.Join(dir, "history.jsonl")
	if f, err := os.Create(path); err != nil {
		t.Error(err)
	} else {
		if err := linearize.WriteJSON(f, ops); err != nil {
			t.Error(err)
		}
		f.Close()
		t.Logf("history saved in %s", path)
	}
	if len(res.Illegal) > 0 {
		path := filepath.Join(dir, "linearizability.html")
		if err := linearize.VisualizeKeys(ops, res.Illegal, path); err != nil {
			t.Errorf("visualization: %v", err)
		} else {
			t.Logf("porcupine visualization of the violations: %s", path)
		}
	}
}

// linTail is the first lines of s, with a count of the rest.
func linTail(s string, lines int) string {
	l := strings.SplitAfter(s, "\n")
	if len(l) <= lines {
		return s
	}
	return strings.Join(l[:lines], "") + fmt.Sprintf("  … %d more\n", len(l)-lines)
}
