package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/grpclog"

	"github.com/kedge-io/kedge/pkg/etcd"
	"github.com/kedge-io/kedge/pkg/server"
)

// etcdTimeout bounds a `kedge etcd` command.
const etcdTimeout = 30 * time.Second

// newEtcdCommand is `kedge etcd member-list|member-remove`, run on a server
// against its local etcd member with the server's etcd client certificate.
func newEtcdCommand() *cobra.Command {
	var dataDir string
	cmd := &cobra.Command{
		Use:   "etcd",
		Short: "Inspect and change the cluster's etcd membership (on a server)",
	}
	cmd.PersistentFlags().StringVarP(&dataDir, "data-dir", "d", "/var/lib/kedge", "directory of the server's state")
	cmd.AddCommand(
		&cobra.Command{
			// The child of etcd.CheckDataInChild: bbolt may panic on damaged data.
			Use:    etcd.CheckDataArgs[1] + " DIR",
			Hidden: true,
			Args:   cobra.ExactArgs(1),
			RunE: func(c *cobra.Command, args []string) error {
				if code := etcd.CheckMain(args[0], c.ErrOrStderr()); code != 0 {
					return exitCode(code)
				}
				return nil
			},
		},
		&cobra.Command{
			Use:   "member-list",
			Short: "List the etcd members: name, role, health",
			Args:  cobra.NoArgs,
			RunE: func(c *cobra.Command, _ []string) error {
				return withLocalEtcd(dataDir, func(ctx context.Context, client *clientv3.Client) error {
					members, err := etcd.Members(ctx, client)
					if err != nil {
						return err
					}
					printMembers(c.OutOrStdout(), members)
					return nil
				})
			},
		},
		&cobra.Command{
			Use:   "member-remove NAME",
			Short: "Remove a server from the etcd membership, if the cluster keeps its quorum",
			Long: "Remove the etcd member NAME (a server's node name). Raft needs a majority of the voting members to " +
				"commit the change and a majority of those that remain to keep working: the removal is refused, " +
				"with the arithmetic, when either is missing. The removed server stops and keeps its etcd data aside; " +
				"it can join again with --server and --token.",
			Args: cobra.ExactArgs(1),
			RunE: func(c *cobra.Command, args []string) error {
				return withLocalEtcd(dataDir, func(ctx context.Context, client *clientv3.Client) error {
					m, err := etcd.RemoveMember(ctx, client, args[0])
					if err != nil {
						return err
					}
					fmt.Fprintf(c.OutOrStdout(), "removed etcd member %s (%x)\n", args[0], m.ID)
					if left, err := etcd.Members(ctx, client); err == nil {
						printMembers(c.OutOrStdout(), left)
					}
					return nil
				})
			},
		},
	)
	return cmd
}

// withLocalEtcd runs f with a client of the server's local etcd member.
func withLocalEtcd(dataDir string, f func(context.Context, *clientv3.Client) error) error {
	return withLocalEtcdTimeout(dataDir, etcdTimeout, f)
}

// withLocalEtcdTimeout is withLocalEtcd with f's time bound.
func withLocalEtcdTimeout(dataDir string, timeout time.Duration, f func(context.Context, *clientv3.Client) error) error {
	tls := server.LocalEtcdTLS(dataDir)
	for _, p := range []string{tls.CA, tls.Cert, tls.Key} {
		if _, err := os.Stat(p); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("--data-dir %s: no etcd client certificate (%s): run this on a server, with its --data-dir", dataDir, p)
			}
			return fmt.Errorf("--data-dir %s: %w", dataDir, err)
		}
	}
	// The probes of members that are down make gRPC log every failed dial
	// (through klog, on stderr); the table says it once per member.
	grpclog.SetLoggerV2(grpclog.NewLoggerV2(io.Discard, io.Discard, io.Discard))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	endpoint := "https://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(etcd.ClientPort))
	client, err := etcd.NewClient(endpoint, tls)
	if err != nil {
		return err
	}
	defer client.Close()
	return f(ctx, client)
}

// printMembers writes the members as a table.
func printMembers(w io.Writer, members []etcd.Member) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tID\tROLE\tPEER URLS\tHEALTH")
	for _, m := range members {
		role, health := "voter", "healthy"
		if m.Learner {
			role = "learner"
		}
		if !m.Healthy {
			health = "unhealthy: " + m.Problem
		}
		name := m.Name
		if name == "" {
			name = "(not started)"
		}
		fmt.Fprintf(tw, "%s\t%x\t%s\t%s\t%s\n", name, m.ID, role, strings.Join(m.PeerURLs, ","), health)
	}
	_ = tw.Flush()
}
