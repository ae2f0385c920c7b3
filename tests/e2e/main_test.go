// Package e2e boots kedge clusters of several nodes on this machine, each
// node in its own network, mount and PID namespaces (see package harness),
// running the real binary ($KEDGE_BIN). Run with `make e2e` (root).
package e2e

import (
	"testing"

	"github.com/kedge-io/kedge/tests/e2e/harness"
)

// TestMain lets the test binary serve as a node's init (harness.Main).
func TestMain(m *testing.M) { harness.Main(m) }
