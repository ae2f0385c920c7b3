package diskguard

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kedge-io/kedge/pkg/etcd/etcdtest"
)

// events records what the guard reports.
type events struct {
	mu  sync.Mutex
	got []string
}

func (e *events) Report(_ context.Context, warning bool, reason, message string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	kind := "Normal"
	if warning {
		kind = "Warning"
	}
	e.got = append(e.got, kind+" "+reason)
	return nil
}

func (e *events) list() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.got...)
}

// newGuard returns a guard of server node with dir whose free space
// reads *free.
func newGuard(node, dir string, c *clientv3.Client, ev Reporter, free *atomic.Uint64) *Guard {
	g := New(Config{Dir: dir, Node: node, MinFree: 256 << 20, Etcd: func() (*clientv3.Client, error) { return c, nil }, Report: ev})
	g.free = func(string) (uint64, error) { return free.Load(), nil }
	return g
}

// nospace lists the NOSPACE alarms.
func nospace(t *testing.T, c *clientv3.Client) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c.AlarmList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, a := range resp.Alarms {
		if a.Alarm == pb.AlarmType_NOSPACE {
			n++
		}
	}
	return n
}

// put writes a key and returns etcd's answer.
func put(c *clientv3.Client, key string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := c.Put(ctx, key, "v")
	return err
}

func TestGuardStopsAndResumesWrites(t *testing.T) {
	c := etcdtest.Start(t, "")
	dir := t.TempDir()
	var free atomic.Uint64
	free.Store(1 << 30)
	ev := &events{}
	g := newGuard("a", dir, c, ev, &free)
	ctx := context.Background()
	check := func() {
		t.Helper()
		if err := g.Check(ctx); err != nil {
			t.Fatal(err)
		}
	}

	check()
	if err := put(c, "/a"); err != nil || g.Refusal() != "" || nospace(t, c) != 0 {
		t.Fatalf("with 1 GiB free: put %v, refusal %q, alarms %d", err, g.Refusal(), nospace(t, c))
	}

	// Stage 1: under MinFree, the server is marked low; etcd still takes
	// writes (Leases must go on).
	free.Store(200 << 20)
	check()
	if r := g.Refusal(); !strings.Contains(r, "server a") || !strings.Contains(r, "200 MiB free, under --etcd-min-free 256 MiB") {
		t.Fatalf("refusal with 200 MiB free: %q", r)
	}
	if err := put(c, "/lease"); err != nil || nospace(t, c) != 0 {
		t.Fatalf("stage 1: put %v, alarms %d", err, nospace(t, c))
	}

	// Stage 2: under half of MinFree, etcd's NOSPACE alarm.
	free.Store(100 << 20)
	check()
	if !g.Raised() || nospace(t, c) != 1 {
		t.Fatalf("with 100 MiB free: raised %v, alarms %d", g.Raised(), nospace(t, c))
	}
	if err := put(c, "/b"); !errors.Is(err, rpctypes.ErrGRPCNoSpace) && !errors.Is(err, rpctypes.ErrNoSpace) {
		t.Fatalf("put with the alarm on: %v, want %v", err, rpctypes.ErrNoSpace)
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if resp, err := c.Get(rctx, "/a"); err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("read with the alarm on: %v, %v", resp, err)
	}
	if _, err := os.Stat(filepath.Join(dir, markerName)); err != nil {
		t.Fatalf("marker: %v", err)
	}

	// Just above the floor is not enough (hysteresis).
	free.Store(270 << 20)
	check()
	if !g.Raised() || nospace(t, c) != 1 || g.Refusal() == "" {
		t.Fatalf("with 270 MiB free: raised %v, alarms %d, refusal %q, want all still on", g.Raised(), nospace(t, c), g.Refusal())
	}

	free.Store(1 << 30)
	check()
	if g.Raised() || nospace(t, c) != 0 || g.Refusal() != "" {
		t.Fatalf("space back: raised %v, alarms %d, refusal %q", g.Raised(), nospace(t, c), g.Refusal())
	}
	if err := put(c, "/c"); err != nil {
		t.Fatalf("put after the space came back: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, markerName)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("marker after disarm: %v", err)
	}
	if got := fmt.Sprint(ev.list()); got != "[Warning DataDirFull Normal DataDirSpaceRecovered]" {
		t.Fatalf("events %s", got)
	}
}

func TestGuardMarksAreClusterWide(t *testing.T) {
	c := etcdtest.Start(t, "")
	ctx := context.Background()
	var lowFree, okFree atomic.Uint64
	lowFree.Store(200 << 20)
	okFree.Store(1 << 30)
	a := newGuard("a", t.TempDir(), c, nil, &lowFree)
	b := newGuard("b", t.TempDir(), c, nil, &okFree)
	for _, g := range []*Guard{a, b} {
		if err := g.Start(ctx); err != nil {
			t.Fatal(err)
		}
		defer g.Stop(ctx)
	}
	waitFor(t, "b refuses writes for a's disk", func() bool { return strings.Contains(b.Refusal(), "server a") })
	lowFree.Store(1 << 30)
	waitFor(t, "b accepts writes again", func() bool { return b.Refusal() == "" })
}

// waitFor polls cond for 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after 10 s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestGuardAfterRestart(t *testing.T) {
	c := etcdtest.Start(t, "")
	dir := t.TempDir()
	var free atomic.Uint64
	free.Store(10 << 20)
	ctx := context.Background()

	// Started on a full disk: writes stop at Start.
	g := newGuard("a", dir, c, nil, &free)
	if err := g.Start(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !g.Raised() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if err := g.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if nospace(t, c) != 1 {
		t.Fatal("the guard started on a full disk raised no alarm")
	}

	// A new process with space back disarms the alarm it raised before.
	free.Store(1 << 30)
	g2 := newGuard("a", dir, c, nil, &free)
	if err := g2.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer g2.Stop(ctx)
	deadline = time.Now().Add(10 * time.Second)
	for nospace(t, c) != 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := nospace(t, c); n != 0 {
		t.Fatalf("alarms after a restart with space back: %d", n)
	}
}

func TestGuardLeavesEtcdsOwnAlarm(t *testing.T) {
	c := etcdtest.Start(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := c.Status(ctx, c.Endpoints()[0])
	if err != nil {
		t.Fatal(err)
	}
	// NOSPACE raised by etcd (an oversized database), not by the guard.
	if _, err := pb.NewMaintenanceClient(c.ActiveConnection()).Alarm(ctx, &pb.AlarmRequest{
		Action: pb.AlarmRequest_ACTIVATE, MemberID: st.Header.MemberId, Alarm: pb.AlarmType_NOSPACE,
	}); err != nil {
		t.Fatal(err)
	}
	var free atomic.Uint64
	free.Store(1 << 30)
	g := newGuard("a", t.TempDir(), c, nil, &free)
	if err := g.Check(ctx); err != nil {
		t.Fatal(err)
	}
	if nospace(t, c) != 1 {
		t.Fatal("the guard disarmed an alarm it did not raise")
	}
}

func TestFreeBytes(t *testing.T) {
	free, err := FreeBytes(t.TempDir())
	if err != nil || free == 0 {
		t.Fatalf("FreeBytes = %d, %v", free, err)
	}
	if _, err := FreeBytes(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Fatal("FreeBytes of a missing dir: no error")
	}
}
