package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kedge-io/kedge/pkg/join"
	"github.com/kedge-io/kedge/pkg/server"
	"github.com/kedge-io/kedge/pkg/token"
)

// apiTimeout bounds a command against the running server.
const apiTimeout = 30 * time.Second

// apiFlags are the flags of the commands that talk to the running server.
type apiFlags struct {
	dataDir    string
	kubeconfig string
}

func (f *apiFlags) register(cmd *cobra.Command) {
	cmd.PersistentFlags().StringVarP(&f.dataDir, "data-dir", "d", "/var/lib/kedge", "directory of the server's state")
	cmd.PersistentFlags().StringVar(&f.kubeconfig, "kubeconfig", "", "admin kubeconfig (default: <data-dir>/server/cred/admin.kubeconfig, else /etc/kedge/kedge.yaml)")
}

// kubeconfigPath is --kubeconfig or the server's admin kubeconfig.
func (f *apiFlags) kubeconfigPath() (string, error) {
	if f.kubeconfig != "" {
		return f.kubeconfig, nil
	}
	for _, p := range []string{server.AdminKubeconfigFile(f.dataDir), "/etc/kedge/kedge.yaml"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("no admin kubeconfig in %s or /etc/kedge/kedge.yaml: run this on a server (--data-dir) or pass --kubeconfig", server.AdminKubeconfigFile(f.dataDir))
}

// client returns the admin kubeconfig's path, its REST config and a client.
func (f *apiFlags) client() (string, *rest.Config, kubernetes.Interface, error) {
	path, err := f.kubeconfigPath()
	if err != nil {
		return "", nil, nil, err
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return path, nil, nil, fmt.Errorf("--kubeconfig %s: %w", path, err)
	}
	client, err := kubernetes.NewForConfig(cfg)
	return path, cfg, client, err
}

// withAPI runs fn with an admin client of the running server and the CA
// bundle it serves at /cacerts (a join token's hash is computed over it).
func (f *apiFlags) withAPI(fn func(ctx context.Context, client kubernetes.Interface, caPEM []byte) error) error {
	path, _, client, err := f.client()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	caPEM, err := client.CoreV1().RESTClient().Get().AbsPath(join.CACertsPath).DoRaw(ctx)
	if err != nil {
		return fmt.Errorf("the server of %s: %s: %w (is kedge server running?)", path, join.CACertsPath, err)
	}
	return fn(ctx, client, caPEM)
}

// newTokenCommand is `kedge token create|list|delete|rotate`.
func newTokenCommand() *cobra.Command {
	var f apiFlags
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Manage join tokens: bootstrap tokens with an expiry, and the server token",
	}
	f.register(cmd)
	var (
		ttl         time.Duration
		description string
		usages      []string
		newToken    string
	)
	create := &cobra.Command{
		Use:   "create",
		Short: "Create a bootstrap token (printed with the CA hash) that joins agents, or servers with --usages server",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			var us []token.Usage
			for _, s := range usages {
				u, err := token.ParseUsage(s)
				if err != nil {
					return err
				}
				us = append(us, u)
			}
			return f.withAPI(func(ctx context.Context, client kubernetes.Interface, caPEM []byte) error {
				t, err := token.Create(ctx, client, token.CreateOptions{TTL: ttl, Description: description, Usages: us})
				if err != nil {
					return err
				}
				fmt.Fprintln(c.OutOrStdout(), join.New(caPEM, t.Secret).String())
				return nil
			})
		},
	}
	create.Flags().DurationVar(&ttl, "ttl", 24*time.Hour, "how long the token is valid (0: never expires)")
	create.Flags().StringVar(&description, "description", "", "what the token is for (shown by `kedge token list`)")
	create.Flags().StringSliceVar(&usages, "usages", []string{string(token.UsageAgent)}, "what the token joins: agent, server (a server token also joins agents)")

	list := &cobra.Command{
		Use:   "list",
		Short: "List the bootstrap tokens (IDs, never secrets)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return f.withAPI(func(ctx context.Context, client kubernetes.Interface, _ []byte) error {
				infos, err := token.List(ctx, client)
				if err != nil {
					return err
				}
				printTokens(c.OutOrStdout(), infos, time.Now())
				return nil
			})
		},
	}
	del := &cobra.Command{
		Use:   "delete ID...",
		Short: "Delete bootstrap tokens: nodes can no longer join with them (joined nodes keep working)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return f.withAPI(func(ctx context.Context, client kubernetes.Interface, _ []byte) error {
				var errs []error
				for _, id := range args {
					if err := token.Delete(ctx, client, id); err != nil {
						errs = append(errs, err)
						continue
					}
					fmt.Fprintf(c.OutOrStdout(), "token %s deleted\n", token.IDOf(id))
				}
				return errors.Join(errs...)
			})
		},
	}
	rotate := &cobra.Command{
		Use:   "rotate",
		Short: "Replace the server token (<data-dir>/server/token) on every server; joined nodes keep working",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return f.withAPI(func(ctx context.Context, client kubernetes.Interface, caPEM []byte) error {
				return rotateServerToken(ctx, c.OutOrStdout(), client, caPEM, newToken, f.dataDir)
			})
		},
	}
	rotate.Flags().StringVar(&newToken, "new-token", "", "the new server token: a secret or a full KEDGE1… token of this cluster (default: generated)")
	cmd.AddCommand(create, list, del, rotate)
	return cmd
}

// rotateServerToken is `kedge token rotate`.
func rotateServerToken(ctx context.Context, out io.Writer, client kubernetes.Interface, caPEM []byte, given, dataDir string) error {
	secret := given
	if given == "" {
		var err error
		if secret, err = join.GenerateSecret(); err != nil {
			return err
		}
	} else {
		t, err := join.Parse(given)
		if err != nil {
			return fmt.Errorf("--new-token: %w", err)
		}
		if t.Pinned() && t.CAHash != join.CAHash(caPEM) {
			return errors.New("--new-token: its CA hash is not this cluster's: give a bare secret or a KEDGE1 token of this cluster's CA")
		}
		secret = t.Secret
	}
	var agentSecret string
	if raw, err := os.ReadFile(server.Config{DataDir: dataDir}.AgentTokenFile()); err == nil {
		if t, err := join.Parse(strings.TrimSpace(string(raw))); err == nil {
			agentSecret = t.Secret
		}
	}
	if err := token.Rotate(ctx, client, secret, agentSecret); err != nil {
		return err
	}
	fmt.Fprintf(out, "server token rotated; new servers and agents join with:\n%s\n", join.New(caPEM, secret))
	fmt.Fprintln(out, "nodes that joined keep working (they use their certificates); update --token in the config of servers that pass it")
	return nil
}

// printTokens writes the tokens as a table.
func printTokens(w io.Writer, infos []token.Info, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTTL\tEXPIRES\tUSAGES\tDESCRIPTION")
	for _, t := range infos {
		ttl, expires := "never", "never"
		if !t.Expires.IsZero() {
			expires = t.Expires.UTC().Format(time.RFC3339)
			if left := t.Expires.Sub(now); left > 0 {
				ttl = left.Round(time.Second).String()
			} else {
				ttl = "expired"
			}
		}
		us := make([]string, 0, len(t.Usages))
		for _, u := range t.Usages {
			us = append(us, string(u))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", t.ID, ttl, expires, strings.Join(us, ","), t.Description)
	}
	_ = tw.Flush()
}
