// Command kedge is Kubernetes in one binary: `kedge server`, `kedge kubectl`.
// Invoked through a symlink named kubectl, it runs kubectl.
package main

import (
	"os"

	"github.com/kedge-io/kedge/pkg/cli"
	"github.com/kedge-io/kedge/pkg/containerd"
	"github.com/kedge-io/kedge/pkg/procstart"
)

func main() {
	// containerd execs the runc shim as this binary; it must run before
	// anything parses flags.
	if containerd.IsShim(os.Args) {
		containerd.RunShim()
		return
	}
	os.Exit(cli.Main(os.Args, procstart.Time()))
}
