package linearize

import (
	"fmt"
	"sort"

	"github.com/anishathalye/porcupine"
)

// Final is a key as read once the faults are over.
type Final struct {
	Exists bool
	Value  string
}

// LostWrites checks the final state against the writes of ops and lists
// what is wrong:
//   - a key with an acknowledged write that does not exist (lost create);
//   - a final value that no write wrote (phantom);
//   - an acknowledged write whose value is not the final one and was not
//     overwritten on the way to it: there is no chain of updates
//     (acknowledged or Unknown, each expecting the value of the one
//     before) from it to the final value (lost write).
//
// final must hold every key of ops.
func LostWrites(ops []porcupine.Operation, final map[string]Final) []string {
	var problems []string
	byKey := ByKey(ops)
	keys := make([]string, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, key := range keys {
		problems = append(problems, lostOnKey(key, byKey[key], final[key])...)
	}
	return problems
}

func lostOnKey(key string, ops []porcupine.Operation, final Final) []string {
	written := map[string]bool{}  // by any write that may have applied
	next := map[string][]string{} // value → values of updates expecting it
	var acked []string            // values of acknowledged writes, in call order
	sort.SliceStable(ops, func(i, j int) bool { return ops[i].Call < ops[j].Call })
	for _, op := range ops {
		in, out := op.Input.(Input), op.Output.(Output)
		if in.Kind == Get || (out.Status != OK && out.Status != Unknown) {
			continue
		}
		written[in.Value] = true
		if in.Kind == Update {
			next[in.PrevValue] = append(next[in.PrevValue], in.Value)
		}
		if out.Status == OK {
			acked = append(acked, in.Value)
		}
	}
	if !final.Exists {
		if len(acked) > 0 {
			return []string{fmt.Sprintf("%s: missing, but its write of %q was acknowledged", key, acked[0])}
		}
		return nil
	}
	if !written[final.Value] {
		return []string{fmt.Sprintf("%s: its value %q was never written", key, final.Value)}
	}
	// The values from which the final one is reached.
	reaches := map[string]bool{final.Value: true}
	for changed := true; changed; {
		changed = false
		for from, tos := range next {
			if reaches[from] {
				continue
			}
			for _, to := range tos {
				if reaches[to] {
					reaches[from], changed = true, true
					break
				}
			}
		}
	}
	var problems []string
	for _, v := range acked {
		if !reaches[v] {
			problems = append(problems, fmt.Sprintf("%s: acknowledged write of %q lost (final value %q)", key, v, final.Value))
		}
	}
	return problems
}
