// Command kedge is Kubernetes in one binary: `kedge server`, `kedge kubectl`.
// Invoked through a symlink named kubectl, it runs kubectl.
package main

import (
	"os"

	"github.com/kedge-io/kedge/pkg/cli"
	"github.com/kedge-io/kedge/pkg/procstart"
)

func main() {
	os.Exit(cli.Main(os.Args, procstart.Time()))
}
