package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"
	"k8s.io/client-go/kubernetes"

	"github.com/kedge-io/kedge/pkg/secretsencrypt"
	"github.com/kedge-io/kedge/pkg/server"
)

// rotateTimeout bounds `kedge secrets-encrypt rotate-keys`: three config
// changes, each loaded by every server, and a rewrite of every Secret.
const rotateTimeout = 15 * time.Minute

// newSecretsEncryptCommand is `kedge secrets-encrypt status|rotate-keys|reencrypt`.
func newSecretsEncryptCommand() *cobra.Command {
	var f apiFlags
	cmd := &cobra.Command{
		Use:   "secrets-encrypt",
		Short: "Show and rotate the keys that encrypt Secrets in etcd (on a server)",
	}
	f.register(cmd)
	cmd.AddCommand(
		&cobra.Command{
			Use:   "status",
			Short: "Show whether Secrets are encrypted, the keys and what every server loaded",
			Args:  cobra.NoArgs,
			RunE: func(c *cobra.Command, _ []string) error {
				return f.withServers(func(ctx context.Context, s secretsencrypt.Servers, _ kubernetes.Interface, _ []byte) error {
					printEncryption(c.OutOrStdout(), s.Status(ctx))
					return nil
				})
			},
		},
		&cobra.Command{
			Use:   "rotate-keys",
			Short: "Replace the encryption key on every server and rewrite every Secret with it, without downtime",
			Args:  cobra.NoArgs,
			RunE: func(c *cobra.Command, _ []string) error {
				return f.withServers(func(ctx context.Context, s secretsencrypt.Servers, kube kubernetes.Interface, raw []byte) error {
					if raw == nil {
						return secretsencrypt.ErrDisabled
					}
					start := time.Now()
					if err := secretsencrypt.RotateKeys(ctx, s, kube, raw, c.OutOrStdout()); err != nil {
						return err
					}
					fmt.Fprintf(c.OutOrStdout(), "rotated in %s\n", time.Since(start).Round(time.Millisecond))
					return nil
				})
			},
		},
		&cobra.Command{
			Use:   "reencrypt",
			Short: "Rewrite every Secret with the key that encrypts now",
			Args:  cobra.NoArgs,
			RunE: func(c *cobra.Command, _ []string) error {
				return f.withServers(func(ctx context.Context, _ secretsencrypt.Servers, kube kubernetes.Interface, raw []byte) error {
					if raw == nil {
						return secretsencrypt.ErrDisabled
					}
					n, rewritten, err := secretsencrypt.Reencrypt(ctx, kube)
					if err != nil {
						return err
					}
					fmt.Fprintf(c.OutOrStdout(), "reencrypt: %d Secrets, %d rewritten\n", n, rewritten)
					return nil
				})
			},
		},
	)
	return cmd
}

// withServers runs fn with every server of the cluster (the etcd members,
// at this server's API port), an admin client and the local encryption
// config (nil when this server has none).
func (f *apiFlags) withServers(fn func(context.Context, secretsencrypt.Servers, kubernetes.Interface, []byte) error) error {
	path, rest, kube, err := f.client()
	if err != nil {
		return err
	}
	u, err := url.Parse(rest.Host)
	if err != nil {
		return fmt.Errorf("--kubeconfig %s: server %q: %w", path, rest.Host, err)
	}
	port := u.Port()
	certs := server.TLSLayout(f.dataDir)
	caPEM, err := os.ReadFile(certs.ServerCA)
	if err != nil {
		return fmt.Errorf("--data-dir %s: %w: run this on a server, with its --data-dir", f.dataDir, err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	admin, err := tls.LoadX509KeyPair(certs.AdminCert, certs.AdminKey)
	if err != nil {
		return fmt.Errorf("--data-dir %s: the admin certificate: %w", f.dataDir, err)
	}
	var raw []byte
	if b, err := os.ReadFile(server.Config{DataDir: f.dataDir}.EncryptionConfigFile()); err == nil {
		raw = b
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	var servers []secretsencrypt.Server
	err = withLocalEtcd(f.dataDir, func(ctx context.Context, c *clientv3.Client) error {
		list, err := c.MemberList(ctx)
		if err != nil {
			return err
		}
		for _, m := range list.Members {
			if m.IsLearner || len(m.ClientURLs) == 0 {
				continue
			}
			cu, err := url.Parse(m.ClientURLs[0])
			if err != nil {
				return err
			}
			servers = append(servers, secretsencrypt.Server{Name: m.Name, URL: "https://" + net.JoinHostPort(cu.Hostname(), port)})
		}
		return nil
	})
	if err != nil {
		return err
	}
	s := secretsencrypt.Servers{List: servers, Client: &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{admin}, MinVersion: tls.VersionTLS12},
	}}}
	ctx, cancel := context.WithTimeout(context.Background(), rotateTimeout)
	defer cancel()
	return fn(ctx, s, kube, raw)
}

// printEncryption writes every server's status as a table.
func printEncryption(w io.Writer, all []secretsencrypt.ServerStatus) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVER\tADDRESS\tENCRYPTION\tACTIVE KEY\tKEYS\tCONFIG\tLOADED")
	for _, s := range all {
		if s.Err != nil {
			fmt.Fprintf(tw, "%s\t%s\tunknown: %v\t\t\t\t\n", s.Name, strings.TrimPrefix(s.URL, "https://"), s.Err)
			continue
		}
		if !s.Enabled {
			fmt.Fprintf(tw, "%s\t%s\toff\t\t\t\t\n", s.Name, strings.TrimPrefix(s.URL, "https://"))
			continue
		}
		loaded := "yes"
		if s.LoadedHash != s.FileHash {
			loaded = "not yet (" + short(s.LoadedHash) + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Name, strings.TrimPrefix(s.URL, "https://"), s.Provider, s.Keys[0], strings.Join(s.Keys, ","), short(s.FileHash), loaded)
	}
	_ = tw.Flush()
}

// short cuts a "sha256:<hex>" hash to 12 hex digits.
func short(h string) string {
	h = strings.TrimPrefix(h, "sha256:")
	if len(h) > 12 {
		h = h[:12]
	}
	return h
}
