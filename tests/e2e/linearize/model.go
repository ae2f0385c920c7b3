package linearize

import (
	"fmt"
	"hash/fnv"

	"github.com/anishathalye/porcupine"
)

// Kind is what an operation does to its key.
type Kind uint8

// The operations of the workload: a quorum read, a create, and a
// compare-and-swap update.
const (
	Get    Kind = iota // GET with resourceVersion "" (a quorum read)
	Create             // POST: applies only if the key does not exist
	Update             // PUT with metadata.resourceVersion: applies only if it matches
)

func (k Kind) String() string {
	switch k {
	case Get:
		return "get"
	case Create:
		return "create"
	case Update:
		return "update"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Input is an operation as a client called it.
type Input struct {
	Kind Kind
	Key  string
	// Value is what Create and Update write. Every write of a history
	// writes a different value, so a value names the write that made it.
	Value string
	// PrevValue and PrevRV are Update's precondition: the value and the
	// resourceVersion the client last saw. The request carries PrevRV;
	// PrevValue lets the model compare even where it does not know the
	// resourceVersion (after a write whose answer was lost).
	PrevValue string
	PrevRV    string
}

// Status is how an operation ended.
type Status uint8

// Statuses. Every one but Unknown is a definite answer: NotFound, Conflict
// and Exists are failures that applied nothing.
const (
	OK       Status = iota // applied (writes); found (Get)
	NotFound               // Get: no such key; Update: key absent
	Conflict               // Update: the resourceVersion did not match
	Exists                 // Create: the key exists
	Unknown                // no answer after the request was sent: may have applied, at any time after the call
)

func (s Status) String() string {
	switch s {
	case OK:
		return "ok"
	case NotFound:
		return "notfound"
	case Conflict:
		return "conflict"
	case Exists:
		return "exists"
	case Unknown:
		return "unknown"
	}
	return fmt.Sprintf("status(%d)", uint8(s))
}

// Output is an operation's answer.
type Output struct {
	Status Status
	Value  string // Get OK: the value read
	RV     string // OK: the object's resourceVersion after the operation
}

// State is one key's register: whether the object exists, its value and its
// resourceVersion. RV is "" when unknown: the value was written by an
// operation whose answer was lost; the next read that returns the value
// tells it.
type State struct {
	Exists bool
	Value  string
	RV     string
}

// Step is the register's sequential specification: whether in could answer
// out in state s, and the state after. It is deterministic: an Unknown
// write is linearized as applied (it takes effect if its precondition
// holds), and "never applied" is the same write linearized after every
// other operation, which its infinite return time allows.
func Step(s State, in Input, out Output) (bool, State) {
	switch in.Kind {
	case Get:
		switch out.Status {
		case NotFound:
			return !s.Exists, s
		case OK:
			if !s.Exists || s.Value != out.Value || (s.RV != "" && s.RV != out.RV) {
				return false, s
			}
			s.RV = out.RV // learnt, if it was unknown
			return true, s
		}
	case Create:
		switch out.Status {
		case OK:
			return !s.Exists, State{Exists: true, Value: in.Value, RV: out.RV}
		case Exists:
			return s.Exists, s
		case Unknown:
			if s.Exists {
				return true, s // it failed
			}
			return true, State{Exists: true, Value: in.Value}
		}
	case Update:
		match := s.Exists && s.Value == in.PrevValue && (s.RV == "" || s.RV == in.PrevRV)
		switch out.Status {
		case OK:
			return match, State{Exists: true, Value: in.Value, RV: out.RV}
		case Conflict:
			return s.Exists && !match, s
		case NotFound:
			return !s.Exists, s
		case Unknown:
			if !match {
				return true, s // it failed
			}
			return true, State{Exists: true, Value: in.Value}
		}
	}
	return false, s
}

// Model is the porcupine model: a compare-and-swap register per key (the
// history is partitioned by Input.Key), states of type State.
var Model = porcupine.Model{
	Partition: partitionByKey,
	Init:      func() any { return State{} },
	Step: func(state, input, output any) (bool, any) {
		return Step(state.(State), input.(Input), output.(Output))
	},
	Equal: func(a, b any) bool { return a.(State) == b.(State) },
	Hash: func(state any) uint64 {
		s := state.(State)
		h := fnv.New64a()
		fmt.Fprintf(h, "%t\x00%s\x00%s", s.Exists, s.Value, s.RV)
		return h.Sum64()
	},
	DescribeOperation: func(input, output any) string {
		return Describe(input.(Input), output.(Output))
	},
	DescribeState: func(state any) string {
		s := state.(State)
		if !s.Exists {
			return "absent"
		}
		rv := s.RV
		if rv == "" {
			rv = "?"
		}
		return fmt.Sprintf("%s@%s", s.Value, rv)
	},
	DescribeOperationMetadata: func(info any) string {
		if info == nil {
			return ""
		}
		return fmt.Sprint(info)
	},
}

// Describe is an operation as one line, e.g. "update k1 a.3@120→b.7: ok @131".
func Describe(in Input, out Output) string {
	var op string
	switch in.Kind {
	case Get:
		op = "get " + in.Key
	case Create:
		op = fmt.Sprintf("create %s=%s", in.Key, in.Value)
	case Update:
		op = fmt.Sprintf("update %s %s@%s→%s", in.Key, in.PrevValue, in.PrevRV, in.Value)
	}
	switch {
	case out.Status == OK && in.Kind == Get:
		return fmt.Sprintf("%s: %s@%s", op, out.Value, out.RV)
	case out.Status == OK:
		return fmt.Sprintf("%s: ok @%s", op, out.RV)
	}
	return op + ": " + out.Status.String()
}

func partitionByKey(history []porcupine.Operation) [][]porcupine.Operation {
	index := map[string]int{}
	var out [][]porcupine.Operation
	for _, op := range history {
		k := op.Input.(Input).Key
		i, ok := index[k]
		if !ok {
			i = len(out)
			index[k] = i
			out = append(out, nil)
		}
		out[i] = append(out[i], op)
	}
	return out
}
