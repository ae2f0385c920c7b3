package linearize

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// memStore is an in-memory register per key, linearizable (each operation
// applies under one lock) unless a bug is switched on, with faults: a
// request not sent, an answer lost after the write applied, a write that
// timed out before it applied.
type memStore struct {
	mu   sync.Mutex
	rng  *rand.Rand
	rev  int
	objs map[string]memObj
	acks int
	// faults, as probabilities
	notSent, lostAnswer, notApplied float64
	// bugs
	loseEvery int               // acknowledge every n-th update without applying it
	stale     map[string]memObj // reads of stale clients come from this copy
	staleFor  map[string]bool   // client names
}

type memObj struct{ value, rv string }

func newMemStore(seed uint64) *memStore {
	return &memStore{rng: rand.New(rand.NewPCG(seed, 0)), objs: map[string]memObj{}, notSent: 0.02, lostAnswer: 0.02, notApplied: 0.02}
}

// client is the Store of the client named name.
func (m *memStore) client(name string) Store { return memClient{m, name} }

type memClient struct {
	m    *memStore
	name string
}

func (c memClient) Do(ctx context.Context, in Input) (Output, error) {
	m := c.m
	m.mu.Lock()
	r, delay := m.rng.Float64(), time.Duration(m.rng.IntN(300))*time.Microsecond
	m.mu.Unlock()
	switch {
	case r < m.notSent:
		return Output{}, fmt.Errorf("%w: connection refused", ErrNotSent)
	case r < m.notSent+m.notApplied:
		time.Sleep(delay)
		return Output{Status: Unknown}, errors.New("timed out before applying")
	}
	time.Sleep(delay)
	out := m.apply(c.name, in)
	time.Sleep(delay)
	if r < m.notSent+m.notApplied+m.lostAnswer {
		return Output{Status: Unknown}, errors.New("answer lost")
	}
	return out, nil
}

func (m *memStore) apply(client string, in Input) Output {
	m.mu.Lock()
	defer m.mu.Unlock()
	cur, found := m.objs[in.Key]
	switch in.Kind {
	case Get:
		if m.staleFor[client] {
			if m.stale == nil {
				m.stale = map[string]memObj{}
				for k, v := range m.objs {
					m.stale[k] = v
				}
			}
			cur, found = m.stale[in.Key]
		}
		if !found {
			return Output{Status: NotFound}
		}
		return Output{Status: OK, Value: cur.value, RV: cur.rv}
	case Create:
		if found {
			return Output{Status: Exists}
		}
	case Update:
		if !found {
			return Output{Status: NotFound}
		}
		if cur.rv != in.PrevRV {
			return Output{Status: Conflict}
		}
	}
	m.rev++
	o := memObj{in.Value, strconv.Itoa(m.rev)}
	if in.Kind == Update {
		m.acks++
		if m.loseEvery > 0 && m.acks%m.loseEvery == 0 {
			return Output{Status: OK, RV: o.rv}
		}
	}
	m.objs[in.Key] = o
	return Output{Status: OK, RV: o.rv}
}

func (m *memStore) final() map[string]Final {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]Final{}
	for k, o := range m.objs {
		out[k] = Final{true, o.value}
	}
	return out
}

// runWorkload runs 6 clients against m until the history holds n
// operations.
func runWorkload(t *testing.T, m *memStore, n int) []porcupine.Operation {
	t.Helper()
	var clients []Client
	for i := range 6 {
		name := fmt.Sprintf("c%d", i)
		clients = append(clients, Client{Name: name, Store: m.client(name)})
	}
	w := New(Config{Clients: clients, Prefix: "k", Pause: time.Millisecond, Seed: 1}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	deadline := time.Now().Add(30 * time.Second)
	for len(w.History.Operations()) < n && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	ops := w.History.Operations()
	if len(ops) < n {
		t.Fatalf("%d operations in 30 s, want %d", len(ops), n)
	}
	t.Logf("%s; %d keys used", w.History.Stats(), len(w.Keys()))
	return ops
}

func TestWorkloadOnLinearizableStore(t *testing.T) {
	m := newMemStore(1)
	ops := runWorkload(t, m, 10000)
	st := CountOps(ops)
	for _, want := range []struct {
		k Kind
		s Status
	}{{Get, OK}, {Get, NotFound}, {Create, OK}, {Create, Exists}, {Create, Unknown}, {Update, OK}, {Update, Conflict}, {Update, Unknown}} {
		if st.ByKind[want.k][want.s] == 0 {
			t.Errorf("no %s answered %s: %s", want.k, want.s, st)
		}
	}
	res := Check(ops, time.Minute)
	t.Logf("check: %s in %s", res.Result, res.Duration)
	if res.Result != porcupine.Ok {
		for _, k := range res.Illegal {
			t.Errorf("not linearizable: %s\n%s", k, Explain(ops, k))
		}
		t.Fatalf("check: %s", res.Result)
	}
	if lost := LostWrites(ops, m.final()); len(lost) > 0 {
		t.Errorf("lost writes: %q", lost)
	}
}

// TestWorkloadManyUnknowns: a third of the writes without an answer (half
// of them applied) still check in seconds: the lanes move on to new keys.
func TestWorkloadManyUnknowns(t *testing.T) {
	m := newMemStore(4)
	m.lostAnswer, m.notApplied = 0.15, 0.15
	ops := runWorkload(t, m, 10000)
	res := Check(ops, time.Minute)
	t.Logf("check: %s in %s", res.Result, res.Duration)
	if res.Result != porcupine.Ok || res.Duration > 20*time.Second {
		t.Fatalf("check: %s in %s, want Ok in seconds", res.Result, res.Duration)
	}
	if lost := LostWrites(ops, m.final()); len(lost) > 0 {
		t.Errorf("lost writes: %q", lost)
	}
}

func TestWorkloadFindsStaleReads(t *testing.T) {
	m := newMemStore(2)
	m.staleFor = map[string]bool{"c3": true}
	ops := runWorkload(t, m, 3000)
	res := Check(ops, time.Minute)
	if res.Result != porcupine.Illegal || len(res.Illegal) == 0 {
		t.Fatalf("check: %s, %d illegal keys; want violations", res.Result, len(res.Illegal))
	}
	t.Logf("%d keys with violations, e.g. %s", len(res.Illegal), res.Illegal[0])
}

func TestWorkloadFindsLostWrites(t *testing.T) {
	m := newMemStore(3)
	m.loseEvery = 25
	ops := runWorkload(t, m, 3000)
	res := Check(ops, time.Minute)
	if res.Result != porcupine.Illegal {
		t.Errorf("check: %s, want Illegal", res.Result)
	}
	lost := LostWrites(ops, m.final())
	if len(lost) == 0 {
		t.Error("no lost writes found")
	} else {
		t.Logf("%d lost writes, e.g. %s", len(lost), lost[0])
	}
}
