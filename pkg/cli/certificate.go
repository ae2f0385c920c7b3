package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kedge-io/kedge/pkg/certs"
	"github.com/kedge-io/kedge/pkg/pki"
)

// rotateWait is how long `kedge certificate rotate` waits for the running
// kedge to answer (it looks for requests once a second).
const rotateWait = 30 * time.Second

// newCertificateCommand is `kedge certificate check|rotate`.
func newCertificateCommand() *cobra.Command {
	var dataDir string
	cmd := &cobra.Command{
		Use:   "certificate",
		Short: "List and renew the certificates kedge issued on this node",
	}
	cmd.PersistentFlags().StringVarP(&dataDir, "data-dir", "d", "/var/lib/kedge", "directory of kedge's state")
	cmd.AddCommand(newCertificateCheckCommand(&dataDir), newCertificateRotateCommand(&dataDir), newCertificateRotateCACommand(&dataDir))
	return cmd
}

func newCertificateCheckCommand(dataDir *string) *cobra.Command {
	var (
		output      string
		kubeconfigs []string
	)
	cmd := &cobra.Command{
		Use:   "check",
		Short: "List every certificate kedge issued on this node: file, subject, issuer, not-after, days left (exit 1 if one expires within 30 days)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return fmt.Errorf("--output %q: want table or json", output)
			}
			if _, err := os.Stat(*dataDir); err != nil {
				return fmt.Errorf("--data-dir: %w", err)
			}
			list, err := certs.Scan(certs.Paths{DataDir: *dataDir, Kubeconfigs: kubeconfigs})
			if err != nil {
				return err
			}
			if len(list) == 0 {
				return fmt.Errorf("--data-dir %s: no certificates (is it kedge's data dir?)", *dataDir)
			}
			now := time.Now()
			w := cmd.OutOrStdout()
			if output == "json" {
				err = certs.WriteJSON(w, list, now)
			} else {
				err = certs.WriteTable(w, list, now)
			}
			if err != nil {
				return err
			}
			expiring := certs.Expiring(list, now)
			if len(expiring) == 0 {
				return nil
			}
			for _, c := range expiring {
				fmt.Fprintf(cmd.ErrOrStderr(), "kedge: %s (%s) expires at %s, within %d days\n", c.Label(), c.Subject, c.NotAfter.Format(time.RFC3339), int(certs.WarnBefore.Hours()/24))
			}
			fmt.Fprintln(cmd.ErrOrStderr(), "kedge: a running kedge renews leaf certificates itself; `kedge certificate rotate` renews them now")
			return exitCode(1)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	cmd.Flags().StringSliceVar(&kubeconfigs, "kubeconfig", []string{"/etc/kedge/kedge.yaml"}, "more kubeconfigs whose embedded certificates to list (a missing one is skipped)")
	return cmd
}

func newCertificateRotateCommand(dataDir *string) *cobra.Command {
	var services []string
	cmd := &cobra.Command{
		Use:   "rotate",
		Short: "Renew now, in the running kedge, the leaf certificates of every service or of --service NAME",
		Long: "Asks the kedge running on this node to issue the leaf certificates of the given services again, with new keys " +
			"(services: " + strings.Join(pki.Services(), ", ") + "; default all). The components pick the new certificates up " +
			"without a restart. If kedge is not running, the request is done at its next start.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req, err := certs.WriteRequest(*dataDir, services)
			if err != nil {
				return err
			}
			deadline := time.Now().Add(rotateWait)
			for time.Now().Before(deadline) {
				res, err := certs.ReadResult(*dataDir, req.ID)
				if err != nil {
					return err
				}
				if res != nil {
					for _, is := range res.Issued {
						fmt.Fprintf(cmd.OutOrStdout(), "renewed %s (%s)\n", is.File, is.Reason)
					}
					if res.Error != "" {
						return errors.New(res.Error)
					}
					fmt.Fprintf(cmd.OutOrStdout(), "%d certificates renewed; the running components use them without a restart\n", len(res.Issued))
					return nil
				}
				time.Sleep(200 * time.Millisecond)
			}
			return fmt.Errorf("no kedge answered within %s (is it running with --data-dir %s?): the request stays in %s and is done when kedge starts",
				rotateWait, *dataDir, filepath.Join(*dataDir, certs.RequestFileName))
		},
	}
	cmd.Flags().StringSliceVar(&services, "service", nil, "service whose certificates to renew (repeatable; default all): "+strings.Join(pki.Services(), ", "))
	return cmd
}
