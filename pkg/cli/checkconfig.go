package cli

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/kedge-io/kedge/pkg/agent"
	"github.com/kedge-io/kedge/pkg/checkconfig"
	"github.com/kedge-io/kedge/pkg/diskguard"
	"github.com/kedge-io/kedge/pkg/hostinfo"
	"github.com/kedge-io/kedge/pkg/server"
)

// errChecksFailed makes check-config exit 1 after its table.
var errChecksFailed = exitCode(1)

func newCheckConfigCommand() *cobra.Command {
	var (
		dataDir string
		asAgent bool
		fix     bool
		minFree = bytesFlag(diskguard.DefaultMinFree)
	)
	cmd := &cobra.Command{
		Use:   "check-config",
		Short: "Check that this host can run a kedge node: kernel, cgroups, devices, netfilter, sysctls, capabilities, disk, ports (exit 1 on any FAIL)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if fix {
				if os.Geteuid() != 0 {
					return errors.New("check-config --fix writes sysctls: run it as root")
				}
				set, err := checkconfig.Fix("", checkconfig.SysctlFile)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "set %v, persisted in %s\n\n", set, checkconfig.SysctlFile)
			}
			nodeIP := hostinfo.DefaultNodeIP()
			ports := server.DefaultPorts(nodeIP)
			if asAgent {
				ports = append(agent.Ports(nodeIP), agent.Port{Addr: agent.LoadBalancerAddress, What: "apiserver load balancer"})
			}
			results := checkconfig.Run(checkconfig.Config{DataDir: dataDir, MinFree: uint64(minFree), Ports: ports})
			checkconfig.Print(cmd.OutOrStdout(), results)
			if checkconfig.Failed(results) {
				return errChecksFailed
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&dataDir, "data-dir", "d", "/var/lib/kedge", "kedge's data dir, whose filesystem's free space is checked")
	cmd.Flags().BoolVar(&asAgent, "agent", false, "check the ports of an agent instead of a server's")
	cmd.Flags().BoolVar(&fix, "fix", false, "first set the sysctls kedge needs (ip_forward, bridge-nf-call-iptables) and persist them in "+checkconfig.SysctlFile)
	cmd.Flags().Var(&minFree, "etcd-min-free", "a server's --etcd-min-free: less free space in the data dir fails the disk check")
	return cmd
}
