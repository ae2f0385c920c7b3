// Package conformance runs the upstream Kubernetes conformance suite
// (e2e.test, ginkgo) against a two-node kedge cluster on this machine: a
// server and an agent on the tests/e2e harness, pulling stand-ins of the
// suite's images (package images) from a local registry that the nodes use
// as a mirror of registry.k8s.io. Nothing leaves the machine.
//
//	make conformance        # every [Conformance] spec: the parallel ones, then [Serial] (root, ~1 h)
//	make conformance-slice  # a focused set of ~30 (DNS, Services, exec/logs/port-forward, volumes, scheduler)
//
// The tools come from scripts/conformance-tools.sh ($KEDGE_CONFORMANCE_TOOLS,
// default bin/conformance), the kedge binary from $KEDGE_BIN; see
// docs/conformance.md.
package conformance

import (
	"testing"

	"github.com/kedge-io/kedge/tests/e2e/harness"
)

// TestMain lets the test binary serve as a node's init (harness.Main).
func TestMain(m *testing.M) { harness.Main(m) }
