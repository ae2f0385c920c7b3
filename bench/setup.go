// Package bench measures kedge against the baseline: the same upstream
// components run as separate processes (package bench/baseline). The driver
// is bench/cmd/kedge-bench; `make bench` builds both setups and runs it.
package bench

import (
	"context"
	"time"
)

// Setup is one way of running a single-node cluster (or a node) on this host.
type Setup interface {
	Name() string                    // "kedge" or "baseline"
	Start(ctx context.Context) error // exec every process and return; does not wait for readiness. Records the exec time.
	ExecTime() time.Time             // when the first process was exec'd
	Kubeconfig() string              // admin kubeconfig path (cluster-admin)
	PIDs() ([]int, error)            // every process of the setup now alive: components, containerd shims (NOT the pods' own container processes)
	Stop(ctx context.Context) error  // stop everything and clean up as `kedge killall` does, leaving the host reusable
}
