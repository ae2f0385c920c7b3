package linearize

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"
)

// ErrNotSent wraps the error of an operation whose request never left the
// client (the connection could not be made): it cannot have applied, and
// the history drops it.
var ErrNotSent = errors.New("request not sent")

// Store is one client's way to the cluster.
type Store interface {
	// Do runs in. A nil error comes with a definite Output (not Unknown).
	// An error wrapping ErrNotSent: nothing was sent. Any other error: the
	// request was sent and its outcome is unknown.
	Do(ctx context.Context, in Input) (Output, error)
}

// Client is a named Store: one of the workload's concurrent clients.
type Client struct {
	Name  string
	Store Store
}

// Config is a workload.
type Config struct {
	Clients []Client
	// Prefix starts the key names: <Prefix>-<lane>-<generation>.
	Prefix string
	// Lanes is how many keys are in use at once (default 3). Every client
	// picks a lane at random for each operation, so clients share keys.
	Lanes int
	// A lane moves on to a new key after OpsPerKey operations (default 40)
	// or UnknownPerKey writes without an answer (default 3) on its key:
	// short histories per key, with few open-ended operations, keep the
	// checker fast.
	OpsPerKey, UnknownPerKey int
	// Timeout bounds each operation (default 4 s); Pause is the wait after
	// an error (default 100 ms); Think the wait after any operation (0).
	Timeout, Pause, Think time.Duration
	// Seed seeds each client's choices (client i: Seed, i).
	Seed uint64
}

// Workload runs clients that create, read and compare-and-swap ConfigMaps
// (or any Store) and records everything they do in a History.
type Workload struct {
	cfg     Config
	History *History

	mu    sync.Mutex
	lanes []lane
	keys  []string
}

type lane struct{ gen, ops, unknown int }

// New prepares a workload that records into h (a new History if nil).
func New(cfg Config, h *History) *Workload {
	if cfg.Lanes == 0 {
		cfg.Lanes = 3
	}
	if cfg.OpsPerKey == 0 {
		cfg.OpsPerKey = 40
	}
	if cfg.UnknownPerKey == 0 {
		cfg.UnknownPerKey = 3
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 4 * time.Second
	}
	if cfg.Pause == 0 {
		cfg.Pause = 100 * time.Millisecond
	}
	if h == nil {
		h = NewHistory()
	}
	w := &Workload{cfg: cfg, History: h, lanes: make([]lane, cfg.Lanes)}
	for i := range w.lanes {
		w.keys = append(w.keys, w.keyName(i, 0))
	}
	return w
}

func (w *Workload) keyName(l, gen int) string { return fmt.Sprintf("%s-%d-%d", w.cfg.Prefix, l, gen) }

// Keys lists every key the workload has used so far.
func (w *Workload) Keys() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.keys...)
}

// current is lane l's key and generation.
func (w *Workload) current(l int) (string, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	g := w.lanes[l].gen
	return w.keyName(l, g), g
}

// account counts an operation on lane l's generation gen and moves the lane
// on when its key has had enough.
func (w *Workload) account(l, gen int, unknown bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	ln := &w.lanes[l]
	if ln.gen != gen {
		return
	}
	ln.ops++
	if unknown {
		ln.unknown++
	}
	if ln.ops >= w.cfg.OpsPerKey || ln.unknown >= w.cfg.UnknownPerKey {
		*ln = lane{gen: gen + 1}
		w.keys = append(w.keys, w.keyName(l, gen+1))
	}
}

// Run runs every client until ctx is done, then waits for the operations
// in flight (they have their own timeout, not ctx's).
func (w *Workload) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for i, c := range w.cfg.Clients {
		wg.Add(1)
		go func() { defer wg.Done(); w.runClient(ctx, i, c) }()
	}
	wg.Wait()
}

// knowledge is what a client believes about a key.
type knowledge uint8

const (
	unseen  knowledge = iota // nothing: create or read it
	absent                   // read as absent: create it
	stale                    // exists or may have changed: read it
	current                  // value and resourceVersion known: read or update
)

type known struct {
	k         knowledge
	value, rv string
}

func (w *Workload) runClient(ctx context.Context, id int, c Client) {
	rng := rand.New(rand.NewPCG(w.cfg.Seed, uint64(id)))
	kn := map[string]known{}
	seq := 0
	for ctx.Err() == nil {
		l := rng.IntN(w.cfg.Lanes)
		key, gen := w.current(l)
		k := kn[key]
		in := Input{Kind: Get, Key: key}
		switch {
		case k.k == absent || (k.k == unseen && rng.IntN(2) == 0):
			in.Kind = Create
		case k.k == current && rng.IntN(2) == 0:
			in.Kind, in.PrevValue, in.PrevRV = Update, k.value, k.rv
		}
		if in.Kind != Get {
			seq++
			in.Value = fmt.Sprintf("%s.%d", c.Name, seq)
		}
		call := w.History.Begin(id, c.Name, in)
		opCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.cfg.Timeout)
		out, err := c.Store.Do(opCtx, in)
		cancel()
		switch {
		case errors.Is(err, ErrNotSent):
			call.Drop()
		case err != nil:
			call.End(Output{Status: Unknown}, err)
			w.account(l, gen, in.Kind != Get)
		default:
			call.End(out, nil)
			w.account(l, gen, false)
		}
		kn[key] = learn(k, in, out, err)
		pause := w.cfg.Think
		if err != nil {
			pause = w.cfg.Pause
		}
		if pause > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(pause):
			}
		}
	}
}

// learn is what a client knows of a key after an operation.
func learn(k known, in Input, out Output, err error) known {
	if errors.Is(err, ErrNotSent) {
		return k
	}
	if err != nil {
		if in.Kind == Get {
			return k
		}
		return known{k: stale}
	}
	switch {
	case out.Status == OK && in.Kind == Get:
		return known{current, out.Value, out.RV}
	case out.Status == OK:
		return known{current, in.Value, out.RV}
	case out.Status == NotFound:
		return known{k: absent}
	}
	return known{k: stale} // Conflict, Exists
}
