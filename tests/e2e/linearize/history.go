package linearize

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
)

// Infinity is the return time of an operation without an answer: it may
// take effect at any time after its call.
const Infinity = math.MaxInt64

// Meta is what a history keeps of an operation besides its input and
// output: who ran it, and why it has no answer. It is the porcupine
// operation's Metadata.
type Meta struct {
	Client string // e.g. "w-lb-0", "a"
	Err    string `json:",omitempty"` // the error of an Unknown operation
	End    int64  `json:",omitempty"` // when an Unknown operation gave up
}

func (m Meta) String() string {
	if m.Err == "" {
		return m.Client
	}
	return m.Client + ": " + m.Err
}

// History records the operations of concurrent clients, with call and
// return times on one monotonic clock. It is safe for concurrent use.
type History struct {
	start time.Time

	mu      sync.Mutex
	ops     []porcupine.Operation
	dropped map[Kind]int // not sent or, for reads, no answer: no effect
}

// NewHistory starts a history; its clock starts now.
func NewHistory() *History {
	return &History{start: time.Now(), dropped: map[Kind]int{}}
}

// Now is the history's clock: nanoseconds since NewHistory.
func (h *History) Now() int64 { return time.Since(h.start).Nanoseconds() }

// Time converts a time of the history's clock to wall time.
func (h *History) Time(t int64) time.Time { return h.start.Add(time.Duration(t)) }

// Call is an operation in flight, from Begin until End or Drop.
type Call struct {
	h      *History
	client int
	meta   Meta
	in     Input
	at     int64
}

// Begin records that client (an index: the visualization's row; name in
// Meta) calls in.
func (h *History) Begin(client int, name string, in Input) *Call {
	return &Call{h: h, client: client, meta: Meta{Client: name}, in: in, at: h.Now()}
}

// End records the answer. An Unknown write gets the return time Infinity
// (err, if not nil, is kept in the metadata); a read without an answer
// has no effect and is dropped.
func (c *Call) End(out Output, err error) {
	end := c.h.Now()
	if out.Status == Unknown {
		if c.in.Kind == Get {
			c.Drop()
			return
		}
		c.meta.End = end
		if err != nil {
			c.meta.Err = err.Error()
		}
		end = Infinity
	}
	c.h.mu.Lock()
	defer c.h.mu.Unlock()
	c.h.ops = append(c.h.ops, porcupine.Operation{
		ClientId: c.client, Input: c.in, Call: c.at, Output: out, Return: end, Metadata: c.meta,
	})
}

// Drop forgets the operation: its request was never sent, so it cannot
// have applied.
func (c *Call) Drop() {
	c.h.mu.Lock()
	defer c.h.mu.Unlock()
	c.h.dropped[c.in.Kind]++
}

// Operations is a copy of the history so far.
func (h *History) Operations() []porcupine.Operation {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]porcupine.Operation(nil), h.ops...)
}

// Stats counts a history's operations by kind and status.
type Stats struct {
	Ops     int
	ByKind  map[Kind]map[Status]int
	Dropped map[Kind]int // never sent, or reads without an answer
	Keys    int
}

// Stats counts the operations so far.
func (h *History) Stats() Stats {
	ops := h.Operations()
	h.mu.Lock()
	dropped := map[Kind]int{}
	for k, n := range h.dropped {
		dropped[k] = n
	}
	h.mu.Unlock()
	s := CountOps(ops)
	s.Dropped = dropped
	return s
}

// CountOps counts ops by kind and status.
func CountOps(ops []porcupine.Operation) Stats {
	s := Stats{Ops: len(ops), ByKind: map[Kind]map[Status]int{}}
	keys := map[string]bool{}
	for _, op := range ops {
		in, out := op.Input.(Input), op.Output.(Output)
		if s.ByKind[in.Kind] == nil {
			s.ByKind[in.Kind] = map[Status]int{}
		}
		s.ByKind[in.Kind][out.Status]++
		keys[in.Key] = true
	}
	s.Keys = len(keys)
	return s
}

// String is e.g. "1200 ops on 30 keys: get 600 (ok 590, notfound 10), …".
func (s Stats) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d ops on %d keys", s.Ops, s.Keys)
	for _, k := range []Kind{Get, Create, Update} {
		byStatus := s.ByKind[k]
		total := 0
		var parts []string
		for _, st := range []Status{OK, NotFound, Conflict, Exists, Unknown} {
			if n := byStatus[st]; n > 0 {
				total += n
				parts = append(parts, fmt.Sprintf("%s %d", st, n))
			}
		}
		fmt.Fprintf(&b, "; %s %d", k, total)
		if len(parts) > 0 {
			fmt.Fprintf(&b, " (%s)", strings.Join(parts, ", "))
		}
		if n := s.Dropped[k]; n > 0 {
			fmt.Fprintf(&b, " + %d dropped", n)
		}
	}
	return b.String()
}

// savedOp is an operation in a saved history.
type savedOp struct {
	Client int
	Input  Input
	Output Output
	Call   int64
	Return int64
	Meta   Meta
}

// WriteJSON saves ops, one JSON object per line, sorted by call time.
func WriteJSON(w io.Writer, ops []porcupine.Operation) error {
	ops = append([]porcupine.Operation(nil), ops...)
	sort.SliceStable(ops, func(i, j int) bool { return ops[i].Call < ops[j].Call })
	enc := json.NewEncoder(w)
	for _, op := range ops {
		meta, _ := op.Metadata.(Meta)
		s := savedOp{op.ClientId, op.Input.(Input), op.Output.(Output), op.Call, op.Return, meta}
		if err := enc.Encode(s); err != nil {
			return err
		}
	}
	return nil
}

// ReadJSON loads a history saved by WriteJSON.
func ReadJSON(r io.Reader) ([]porcupine.Operation, error) {
	dec := json.NewDecoder(r)
	var ops []porcupine.Operation
	for {
		var s savedOp
		if err := dec.Decode(&s); err == io.EOF {
			return ops, nil
		} else if err != nil {
			return nil, fmt.Errorf("operation %d: %w", len(ops)+1, err)
		}
		ops = append(ops, porcupine.Operation{
			ClientId: s.Client, Input: s.Input, Output: s.Output, Call: s.Call, Return: s.Return, Metadata: s.Meta,
		})
	}
}
