// Package cli turns kedge's command line and config file into typed
// configuration and hands it to the role's composition root. It does
// nothing else.
//
//	os.Exit(cli.Main(os.Args, time.Now()))
package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/kedge-io/kedge/pkg/agent"
	"github.com/kedge-io/kedge/pkg/crictl"
	"github.com/kedge-io/kedge/pkg/ctr"
	"github.com/kedge-io/kedge/pkg/kubectl"
	"github.com/kedge-io/kedge/pkg/logging"
	"github.com/kedge-io/kedge/pkg/server"
	"github.com/kedge-io/kedge/pkg/upgrade"
	"github.com/kedge-io/kedge/pkg/version"
)

// Main runs kedge with the process arguments and returns the exit code.
// When the binary is invoked under another name (a symlink named kubectl),
// it runs that tool instead (multicall).
func Main(argv []string, exec time.Time) int {
	switch filepath.Base(argv[0]) {
	case "kubectl":
		return kubectl.Run(argv[1:])
	case "ctr":
		return ctr.Run(agent.ContainerdAddress(), argv[1:])
	case "crictl":
		return crictl.Run(dataDirFromEnv(), agent.ContainerdAddress(), argv[1:])
	}
	restore := hideGlobalVersionFlag()
	root := &cobra.Command{
		Use:           "kedge",
		Short:         "Kubernetes in one binary for the edge",
		Version:       version.String(),
		SilenceUsage:  true,
		SilenceErrors: true,
		// Flags are parsed by now: give the upstream components back the
		// global set they look flags up in.
		PersistentPreRun: func(*cobra.Command, []string) { restore() },
	}
	root.AddCommand(
		newServerCommand(exec, runServer),
		newAgentCommand(),
		newKillallCommand(),
		newEtcdCommand(),
		newEtcdSnapshotCommand(),
		newTokenCommand(),
		newSecretsEncryptCommand(),
		newCheckConfigCommand(),
		newCertificateCommand(),
		&cobra.Command{
			Use:                "crictl",
			Short:              "Run crictl against this node's containerd (data dir from $KEDGE_DATA_DIR, default /var/lib/kedge)",
			DisableFlagParsing: true,
			RunE: func(_ *cobra.Command, args []string) error {
				if code := crictl.Run(dataDirFromEnv(), agent.ContainerdAddress(), args); code != 0 {
					return exitCode(code)
				}
				return nil
			},
		},
		&cobra.Command{
			Use:                "ctr",
			Short:              "Run containerd's ctr against this node's containerd (namespace k8s.io)",
			DisableFlagParsing: true,
			RunE: func(_ *cobra.Command, args []string) error {
				if code := ctr.Run(agent.ContainerdAddress(), args); code != 0 {
					return exitCode(code)
				}
				return nil
			},
		},
		&cobra.Command{
			Use:                "kubectl",
			Short:              "Run kubectl (defaults to the admin kubeconfig " + kubectl.DefaultKubeconfig + ")",
			DisableFlagParsing: true,
			RunE: func(_ *cobra.Command, args []string) error {
				if code := kubectl.Run(args); code != 0 {
					return exitCode(code)
				}
				return nil
			},
		},
	)
	root.SetArgs(argv[1:])
	if err := root.Execute(); err != nil {
		if errors.Is(err, upgrade.ErrRestart) {
			return upgrade.Restart(argv) // the binary was upgraded (pkg/upgrade)
		}
		var code exitCode
		if errors.As(err, &code) {
			return int(code)
		}
		fmt.Fprintln(os.Stderr, "kedge:", err)
		return 1
	}
	return 0
}

// hideGlobalVersionFlag hides, while cobra parses kedge's command line, the
// --version flag that an imported Kubernetes package
// (component-base/version/verflag) registers on the global pflag.CommandLine.
// Cobra adds that global set to every command: its non-boolean --version
// would shadow cobra's own (`kedge --version` failed with "flag declared as
// non-bool"), and `kedge server --version` would be accepted, ignored, and
// start a server. The returned function puts the original set back: the
// embedded kubelet looks the flag up there when it builds its flag set.
func hideGlobalVersionFlag() (restore func()) {
	orig := pflag.CommandLine
	if orig.Lookup("version") == nil {
		return func() {}
	}
	global := pflag.NewFlagSet(pflag.CommandLine.Name(), pflag.ExitOnError)
	global.SetNormalizeFunc(pflag.CommandLine.GetNormalizeFunc())
	pflag.CommandLine.VisitAll(func(f *pflag.Flag) {
		if f.Name != "version" {
			global.AddFlag(f)
		}
	})
	pflag.CommandLine = global
	return func() { pflag.CommandLine = orig }
}

// dataDirFromEnv is the data dir for the tool subcommands, which pass every
// argument through and so take no --data-dir flag.
func dataDirFromEnv() string {
	if d := os.Getenv("KEDGE_DATA_DIR"); d != "" {
		return d
	}
	return "/var/lib/kedge"
}

// exitCode carries a sub-tool's exit status through cobra.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// runServer sets up logging and signals, once for the whole process, and
// runs the server role until SIGTERM or SIGINT.
func runServer(cfg server.Config, debug bool) error {
	log, flush := logging.SetupProcess(debug, cfg.LogFormat)
	defer flush()
	log.Info("starting kedge server", "version", version.String(), "node", cfg.NodeName, "node_ip", cfg.NodeIP, "data_dir", cfg.DataDir)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return server.Run(ctx, cfg, log)
}
