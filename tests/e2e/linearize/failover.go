package linearize

import (
	"slices"
	"time"

	"github.com/anishathalye/porcupine"
)

// FirstAck is the earliest return time of an acknowledged write (Create or
// Update OK) called at or after after, by a client that which accepts (nil:
// any), on the history's clock.
func FirstAck(ops []porcupine.Operation, after int64, which func(client string) bool) (int64, bool) {
	best, found := int64(0), false
	for _, op := range ops {
		in, out := op.Input.(Input), op.Output.(Output)
		if in.Kind == Get || out.Status != OK || op.Call < after {
			continue
		}
		if meta, _ := op.Metadata.(Meta); which != nil && !which(meta.Client) {
			continue
		}
		if !found || op.Return < best {
			best, found = op.Return, true
		}
	}
	return best, found
}

// Percentile is the p-th percentile (0 < p ≤ 100, nearest rank) of ds, 0
// if ds is empty.
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := int(p/100*float64(len(s))+0.999999) - 1
	return s[min(max(rank, 0), len(s)-1)]
}
