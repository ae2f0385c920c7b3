package containerd

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"slices"

	"github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2/manager"
	_ "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2/task/plugin" // the shim's task service
	"github.com/containerd/containerd/v2/pkg/shim"
	"github.com/containerd/log"
	"github.com/containerd/plugin"
	"github.com/containerd/plugin/registry"
)

// ShimName is the executable containerd runs for the io.containerd.runc.v2
// runtime, found on PATH (BinDir/containerd-shim-runc-v2, a link to kedge).
const ShimName = "containerd-shim-runc-v2"

// shimTaskPlugin is the one plugin of a containerd-shim-runc-v2 binary.
const shimTaskPlugin = "io.containerd.ttrpc.v1.task"

// IsShim reports whether the process was started as the runc v2 shim, so
// that kedge's main runs RunShim instead of its own command line. That is
// the case in two ways:
//   - containerd runs ShimName (the link in BinDir) with a "start" or
//     "delete" action: argv[0] ends in ShimName;
//   - the "start" action then runs the long-lived shim server as
//     os.Executable() — the resolved kedge binary, so argv[0] is kedge —
//     with "-namespace" as the first argument and containerd's TTRPC_ADDRESS
//     in the environment (cmd/containerd-shim-runc-v2/manager).
func IsShim(args []string) bool {
	if len(args) == 0 {
		return false
	}
	if filepath.Base(args[0]) == ShimName {
		return true
	}
	return len(args) > 1 && args[1] == "-namespace" && os.Getenv("TTRPC_ADDRESS") != ""
}

// RunShim runs the process as containerd-shim-runc-v2, as containerd's own
// cmd/containerd-shim-runc-v2 does, and returns when the shim is done
// (it exits the process itself on errors). Call it first thing in main,
// when IsShim(os.Args).
//
// The kedge binary is more than a shim, so RunShim first takes away what
// the shim must not see: flags other packages registered on the global
// flag set (the shim parses its own there), and every plugin registration
// but the shim's task service (the shim loads all registered plugins, and
// kedge registers containerd's daemon plugins too).
func RunShim() {
	flag.CommandLine = flag.NewFlagSet(os.Args[0], flag.ExitOnError)
	keep := registry.Graph(func(r *plugin.Registration) bool { return r.URI() != shimTaskPlugin })
	registry.Reset()
	for i := range keep {
		registry.Register(&keep[i])
	}
	// The shim logs to a fifo containerd copies to kedge's stderr; its info
	// lines (one per plugin loaded) are noise there.
	if !slices.Contains(os.Args[1:], "-debug") {
		_ = log.SetLevel("warn")
	}
	shim.RunShim(context.Background(), manager.NewShimManager(RuntimeType))
}
