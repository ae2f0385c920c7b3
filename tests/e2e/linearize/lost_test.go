package linearize

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

func TestLostWrites(t *testing.T) {
	chain := []porcupine.Operation{
		op(0, 0, 10, create("k", "a"), ok("1")),
		op(1, 5, 12, create("k", "x"), exists),
		op(0, 20, 30, update("k", "a", "1", "b"), ok("2")),
		op(1, 25, 35, update("k", "a", "1", "y"), conflict),
		op(0, 40, inf, update("k", "b", "2", "c"), unknown),
		op(2, 0, inf, create("u", "z"), unknown), // never applied: fine
	}
	for _, tc := range []struct {
		name  string
		ops   []porcupine.Operation
		final map[string]Final
		want  []string // substrings of the problems, in order
	}{
		{"final value is the last write", chain, map[string]Final{"k": {true, "c"}}, nil},
		{"final value is the last acknowledged write (the unknown one did not apply)", chain, map[string]Final{"k": {true, "b"}}, nil},
		{"the acknowledged update lost", chain, map[string]Final{"k": {true, "a"}}, []string{`k: acknowledged write of "b" lost`}},
		{"a value no write wrote", chain, map[string]Final{"k": {true, "y"}}, []string{`k: its value "y" was never written`}},
		{"an acknowledged create missing", chain, map[string]Final{}, []string{`k: missing, but its write of "a" was acknowledged`}},
		{"overwritten through an unknown update", []porcupine.Operation{
			op(0, 0, 10, create("k", "a"), ok("1")),
			op(0, 20, inf, update("k", "a", "1", "b"), unknown),
			op(1, 40, 50, update("k", "b", "7", "c"), ok("8")),
		}, map[string]Final{"k": {true, "c"}}, nil},
		{"two acknowledged CAS from one value: one is lost", []porcupine.Operation{
			op(0, 0, 10, create("k", "a"), ok("1")),
			op(0, 20, 30, update("k", "a", "1", "b"), ok("2")),
			op(1, 40, 50, update("k", "a", "1", "c"), ok("3")),
		}, map[string]Final{"k": {true, "c"}}, []string{`k: acknowledged write of "b" lost`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := LostWrites(tc.ops, tc.final)
			if len(got) != len(tc.want) {
				t.Fatalf("problems %q, want %q", got, tc.want)
			}
			for i := range got {
				if !strings.Contains(got[i], tc.want[i]) {
					t.Errorf("problem %q, want %q", got[i], tc.want[i])
				}
			}
		})
	}
}

func TestFirstAckAndPercentile(t *testing.T) {
	ops := []porcupine.Operation{
		op(0, 0, 10, create("k", "a"), ok("1")),
		op(1, 20, 90, update("k", "a", "1", "b"), ok("2")),
		op(2, 25, 60, get("k"), read("a", "1")),
		op(2, 30, 70, update("k", "a", "1", "c"), conflict),
		op(0, 40, 80, create("k2", "d"), ok("3")),
	}
	if at, found := FirstAck(ops, 15, nil); !found || at != 80 {
		t.Errorf("FirstAck after 15: %d %v, want 80", at, found)
	}
	if at, found := FirstAck(ops, 15, func(c string) bool { return c == "B" }); !found || at != 90 {
		t.Errorf("FirstAck by B: %d %v, want 90", at, found)
	}
	if _, found := FirstAck(ops, 50, nil); found {
		t.Error("FirstAck after 50 found a write")
	}
	var ds []time.Duration
	for i := 1; i <= 100; i++ {
		ds = append(ds, time.Duration(101-i))
	}
	if got := []time.Duration{Percentile(ds, 50), Percentile(ds, 99), Percentile(ds, 100), Percentile(nil, 50)}; !reflect.DeepEqual(got, []time.Duration{50, 99, 100, 0}) {
		t.Errorf("percentiles %v", got)
	}
	if got := Percentile([]time.Duration{3, 1, 2}, 50); got != 2 {
		t.Errorf("median of 3: %v", got)
	}
}
