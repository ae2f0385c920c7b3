package cli

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/kedge-io/kedge/pkg/killall"
	"github.com/kedge-io/kedge/pkg/kubelet"
	"github.com/kedge-io/kedge/pkg/logging"
)

// RunDir holds kedge's sockets and runtime state.
const RunDir = "/run/kedge"

func newKillallCommand() *cobra.Command {
	var dataDir string
	cmd := &cobra.Command{
		Use:   "killall",
		Short: "Stop kedge and every pod container on this node, unmount, and remove kedge's interfaces and iptables rules",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if os.Geteuid() != 0 {
				return errors.New("kedge killall must run as root")
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			return killall.Run(ctx, killall.Config{
				DataDir:    dataDir,
				RunDir:     RunDir,
				KubeletDir: kubelet.DefaultRootDir,
				Log:        logging.Setup(os.Stderr, false),
			})
		},
	}
	cmd.Flags().StringVarP(&dataDir, "data-dir", "d", "/var/lib/kedge", "directory of kedge's state")
	return cmd
}
