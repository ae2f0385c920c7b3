package linearize

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

const inf = Infinity

func op(client int, call, ret int64, in Input, out Output) porcupine.Operation {
	return porcupine.Operation{ClientId: client, Call: call, Return: ret, Input: in, Output: out, Metadata: Meta{Client: string(rune('A' + client))}}
}

func get(k string) Input       { return Input{Kind: Get, Key: k} }
func create(k, v string) Input { return Input{Kind: Create, Key: k, Value: v} }
func update(k, prev, rv, v string) Input {
	return Input{Kind: Update, Key: k, PrevValue: prev, PrevRV: rv, Value: v}
}
func ok(rv string) Output      { return Output{Status: OK, RV: rv} }
func read(v, rv string) Output { return Output{Status: OK, Value: v, RV: rv} }

var (
	notFound = Output{Status: NotFound}
	conflict = Output{Status: Conflict}
	exists   = Output{Status: Exists}
	unknown  = Output{Status: Unknown}
)

func TestCheckSyntheticHistories(t *testing.T) {
	for _, tc := range []struct {
		name string
		want porcupine.CheckResult
		ops  []porcupine.Operation
	}{
		{"linearizable: concurrent creates, CAS updates and reads", porcupine.Ok, []porcupine.Operation{
			op(0, 0, 10, create("k", "a"), ok("1")),
			op(1, 5, 15, get("k"), notFound), // concurrent with the create: before it
			op(2, 2, 12, create("k", "x"), exists),
			op(1, 20, 30, get("k"), read("a", "1")),
			op(0, 35, 50, update("k", "a", "1", "b"), ok("2")),
			op(2, 40, 55, update("k", "a", "1", "c"), conflict),
			op(1, 45, 60, get("k"), read("a", "1")), // concurrent with the update: before it
			op(1, 61, 70, get("k"), read("b", "2")),
			op(3, 0, 100, get("other"), notFound),
		}},
		{"stale read", porcupine.Illegal, []porcupine.Operation{
			op(0, 0, 10, create("k", "a"), ok("1")),
			op(0, 20, 30, update("k", "a", "1", "b"), ok("2")),
			op(1, 40, 50, get("k"), read("a", "1")),
		}},
		{"stale NotFound after an acknowledged create", porcupine.Illegal, []porcupine.Operation{
			op(0, 0, 10, create("k", "a"), ok("1")),
			op(1, 11, 20, get("k"), notFound),
		}},
		{"lost acknowledged write: a CAS on the value it replaced succeeds", porcupine.Illegal, []porcupine.Operation{
			op(0, 0, 10, create("k", "a"), ok("1")),
			op(0, 20, 30, update("k", "a", "1", "b"), ok("2")),
			op(1, 40, 50, update("k", "a", "1", "c"), ok("3")),
		}},
		{"indeterminate write that applied", porcupine.Ok, []porcupine.Operation{
			op(0, 0, 10, create("k", "a"), ok("1")),
			op(0, 20, inf, update("k", "a", "1", "b"), unknown),
			op(1, 40, 50, get("k"), read("b", "7")),
			op(1, 60, 70, update("k", "b", "7", "c"), ok("8")),
			op(2, 80, 90, get("k"), read("c", "8")),
		}},
		{"indeterminate write that did not apply", porcupine.Ok, []porcupine.Operation{
			op(0, 0, 10, create("k", "a"), ok("1")),
			op(0, 20, inf, update("k", "a", "1", "b"), unknown),
			op(1, 40, 50, get("k"), read("a", "1")),
			op(1, 60, 70, update("k", "a", "1", "c"), ok("5")),
			op(2, 80, 90, get("k"), read("c", "5")),
		}},
		{"indeterminate write that applied late", porcupine.Ok, []porcupine.Operation{
			op(0, 0, 10, create("k", "a"), ok("1")),
			op(0, 20, inf, update("k", "a", "1", "b"), unknown),
			op(0, 30, 35, get("k"), read("a", "1")),
			op(1, 40, 50, get("k"), read("a", "1")),
			op(2, 60, 70, get("k"), read("b", "9")),
		}},
		{"indeterminate write seen, then unseen", porcupine.Illegal, []porcupine.Operation{
			op(0, 0, 10, create("k", "a"), ok("1")),
			op(0, 20, inf, update("k", "a", "1", "b"), unknown),
			op(1, 40, 50, get("k"), read("b", "9")),
			op(2, 60, 70, get("k"), read("a", "1")),
		}},
		{"indeterminate create, its resourceVersion learnt by a read", porcupine.Ok, []porcupine.Operation{
			op(0, 0, inf, create("k", "a"), unknown),
			op(1, 10, 20, get("k"), read("a", "3")),
			op(1, 30, 40, update("k", "a", "3", "b"), ok("4")),
			op(2, 35, 45, create("k", "x"), exists),
		}},
		{"indeterminate create after another create", porcupine.Illegal, []porcupine.Operation{
			op(0, 0, inf, create("k", "a"), unknown),
			op(1, 5, 15, create("k", "b"), ok("2")),
			op(2, 20, 30, get("k"), read("a", "3")),
		}},
		{"a conflict that applied", porcupine.Illegal, []porcupine.Operation{
			op(0, 0, 10, create("k", "a"), ok("1")),
			op(0, 20, 30, update("k", "a", "1", "b"), conflict),
			op(1, 40, 50, get("k"), read("b", "2")),
		}},
		{"one value, two resourceVersions", porcupine.Illegal, []porcupine.Operation{
			op(0, 0, inf, create("k", "a"), unknown),
			op(1, 20, 30, get("k"), read("a", "1")),
			op(1, 40, 50, get("k"), read("a", "5")),
		}},
		{"an update of an existing key answered NotFound", porcupine.Illegal, []porcupine.Operation{
			op(0, 0, 10, create("k", "a"), ok("1")),
			op(1, 20, 30, update("k", "a", "1", "b"), notFound),
		}},
		{"keys are independent", porcupine.Ok, []porcupine.Operation{
			op(0, 0, 10, create("k1", "a"), ok("1")),
			op(1, 0, 10, create("k2", "b"), ok("2")),
			op(0, 20, 30, get("k2"), read("b", "2")),
			op(1, 20, 30, get("k1"), read("a", "1")),
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := Check(tc.ops, 10*time.Second)
			if res.Result != tc.want {
				t.Fatalf("check: %s, want %s; operations:\n%s", res.Result, tc.want, Explain(tc.ops, "k"))
			}
			if tc.want == porcupine.Illegal && (len(res.Illegal) != 1 || res.Illegal[0] != "k") {
				t.Errorf("illegal keys %v, want [k]", res.Illegal)
			}
		})
	}
}

func TestVisualizeKeys(t *testing.T) {
	ops := []porcupine.Operation{
		op(0, 0, 10, create("k", "a"), ok("1")),
		op(0, 20, 30, update("k", "a", "1", "b"), ok("2")),
		op(1, 40, 50, get("k"), read("a", "1")),
		op(2, 0, 50, get("other"), notFound),
	}
	path := filepath.Join(t.TempDir(), "v.html")
	if err := VisualizeKeys(ops, []string{"k"}, path); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), "update k a@1→b") || strings.Contains(string(raw), "get other") {
		t.Errorf("visualization of key k: %d bytes, without its update or with another key", len(raw))
	}
}

func TestSaveLoad(t *testing.T) {
	ops := []porcupine.Operation{
		op(0, 0, 10, create("k", "a"), ok("1")),
		op(0, 20, inf, update("k", "a", "1", "b"), unknown),
	}
	var b strings.Builder
	if err := WriteJSON(&b, ops); err != nil {
		t.Fatal(err)
	}
	back, err := ReadJSON(strings.NewReader(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	if len(back) != 2 || back[1].Input.(Input) != ops[1].Input || back[1].Return != inf || back[0].Output.(Output) != ops[0].Output {
		t.Errorf("round trip: %+v", back)
	}
}

// TestSavedHistory checks a history saved by TestLinearizable
// (KEDGE_LINEARIZE_HISTORY=<dir>/history.jsonl), to study a violation.
func TestSavedHistory(t *testing.T) {
	path := os.Getenv("KEDGE_LINEARIZE_HISTORY")
	if path == "" {
		t.Skip("KEDGE_LINEARIZE_HISTORY is not set")
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ops, err := ReadJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	res := Check(ops, 10*time.Minute)
	t.Logf("%s: %s in %s", CountOps(ops), res.Result, res.Duration)
	for _, k := range res.Illegal {
		t.Errorf("not linearizable: %s\n%s", k, Explain(ops, k))
	}
}
