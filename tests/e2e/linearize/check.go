package linearize

import (
	"fmt"
	"os"
	"sort"
	"time"

	"github.com/anishathalye/porcupine"
)

// Result is the outcome of Check.
type Result struct {
	Result porcupine.CheckResult // Ok, Illegal, or Unknown (timed out)
	// Illegal lists the keys whose operations are not linearizable: each
	// one is a violation.
	Illegal  []string
	Duration time.Duration
}

// Check runs porcupine on ops with Model. The whole history is checked
// first (porcupine checks the keys in parallel and stops at the first
// violation); if it is not linearizable, every key is checked alone to
// list the violations. timeout 0: no limit.
func Check(ops []porcupine.Operation, timeout time.Duration) Result {
	begin := time.Now()
	res := Result{Result: porcupine.CheckOperationsTimeout(Model, ops, timeout)}
	if res.Result == porcupine.Illegal {
		byKey := ByKey(ops)
		keys := make([]string, 0, len(byKey))
		for k := range byKey {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if porcupine.CheckOperationsTimeout(Model, byKey[k], timeout) == porcupine.Illegal {
				res.Illegal = append(res.Illegal, k)
			}
		}
	}
	res.Duration = time.Since(begin)
	return res
}

// ByKey groups ops by Input.Key, each group in the order of ops.
func ByKey(ops []porcupine.Operation) map[string][]porcupine.Operation {
	out := map[string][]porcupine.Operation{}
	for _, op := range ops {
		k := op.Input.(Input).Key
		out[k] = append(out[k], op)
	}
	return out
}

// VisualizeKeys writes porcupine's HTML visualization of the operations on
// keys (the violations of a Check) to path.
func VisualizeKeys(ops []porcupine.Operation, keys []string, path string) error {
	want := map[string]bool{}
	for _, k := range keys {
		want[k] = true
	}
	var sel []porcupine.Operation
	for _, op := range ops {
		if want[op.Input.(Input).Key] {
			sel = append(sel, op)
		}
	}
	_, info := porcupine.CheckOperationsVerbose(Model, sel, time.Minute)
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := porcupine.Visualize(Model, info, f); err != nil {
		f.Close()
		return fmt.Errorf("visualize: %w", err)
	}
	return f.Close()
}

// Explain describes the operations on key, in call order, for a log.
func Explain(ops []porcupine.Operation, key string) string {
	sel := ByKey(ops)[key]
	sort.SliceStable(sel, func(i, j int) bool { return sel[i].Call < sel[j].Call })
	s := ""
	for _, op := range sel {
		ret := "∞"
		if op.Return != Infinity {
			ret = time.Duration(op.Return).String()
		}
		s += fmt.Sprintf("  [%s, %s] %s: %s\n", time.Duration(op.Call), ret, op.Metadata, Describe(op.Input.(Input), op.Output.(Output)))
	}
	return s
}
