// Package linearize checks that a key-value API stays linearizable: a
// workload of concurrent clients creates, reads (quorum reads) and
// compare-and-swaps keys, a History records every operation with its call
// and return times, and porcupine checks the history against Model, a
// compare-and-swap register per key whose state is (value,
// resourceVersion). LostWrites checks the state read at the end against
// the acknowledged writes. KubeStore runs the operations on ConfigMaps
// through client-go; the e2e test TestLinearizable drives it against a
// kedge cluster under faults. Nothing here needs a cluster or root.
//
// Operations without an answer (a timeout, a connection lost after the
// request was sent) are Unknown: they get the return time Infinity and the
// model applies them whenever their precondition holds, which covers both
// "applied, at any time after the call" and "never applied" (linearized
// last). Requests that were never sent are dropped, as are reads without
// an answer. Every write writes a value of its own, so a value names its
// write; the lanes of the workload move on to a new key after a few
// dozen operations or a few Unknown writes, which keeps each key's
// history short and the check fast.
//
//	h := linearize.NewHistory()
//	w := linearize.New(linearize.Config{Prefix: "lin", Clients: clients, Seed: seed}, h)
//	go w.Run(ctx) // until ctx is done
//	…
//	res := linearize.Check(h.Operations(), 10*time.Minute)
//	if res.Result != porcupine.Ok { … res.Illegal … }
//	lost := linearize.LostWrites(h.Operations(), final)
package linearize
