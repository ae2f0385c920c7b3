package cli

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kedge-io/kedge/pkg/certs"
)

// rotateCAWait is how long `kedge certificate rotate-ca` waits for the
// running server (it issues every leaf again, the node's included, and
// waits up to 40 s for the other servers to report the phase).
const rotateCAWait = 150 * time.Second

// newCertificateRotateCACommand is `kedge certificate rotate-ca [--finish [--force]]`.
func newCertificateRotateCACommand(dataDir *string) *cobra.Command {
	var finish, force bool
	cmd := &cobra.Command{
		Use:   "rotate-ca",
		Short: "Replace the cluster's CAs in the running server without downtime (then --finish drops the old ones)",
		Long: "Phase 1 (no flag): the running server creates new CAs (server, client, request-header, etcd server and peer), " +
			"cross-signed by the old ones; every CA file becomes the bundle new + old, every leaf is issued again by the new CAs " +
			"and picked up live; the other servers of the cluster get the new CAs through etcd (sealed) and do the same within seconds; " +
			"agents fetch the new bundles and renew within a minute; the join and agent tokens change " +
			"(the new ones are printed). Phase 2 (--finish): once every server reported the new CAs and every node serves certificates " +
			"of them (checked on the wire), the old CAs leave the bundles on every server. The service-account key is not changed.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if force && !finish {
				return errors.New("--force goes with --finish")
			}
			phase := certs.CAStart
			if finish {
				phase = certs.CAFinish
			}
			req, err := certs.WriteCARequest(*dataDir, phase, force)
			if err != nil {
				return err
			}
			res, err := waitResult(*dataDir, req.ID, rotateCAWait)
			if err != nil {
				return err
			}
			if res.Error != "" {
				return errors.New(res.Error)
			}
			return printCARotation(cmd.OutOrStdout(), *dataDir, phase, res)
		},
	}
	cmd.Flags().BoolVar(&finish, "finish", false, "drop the old CAs from the bundles (phase 2), once every node has certificates of the new ones")
	cmd.Flags().BoolVar(&force, "force", false, "with --finish: do not check that every node's kubelet serves a certificate of the new CA")
	return cmd
}

// waitResult waits for the running kedge's answer to request id; without
// one in time the request is withdrawn.
func waitResult(dataDir, id string, wait time.Duration) (*certs.Result, error) {
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		res, err := certs.ReadResult(dataDir, id)
		if err != nil || res != nil {
			return res, err
		}
		time.Sleep(200 * time.Millisecond)
	}
	path := filepath.Join(dataDir, certs.RequestFileName)
	if data, err := os.ReadFile(path); err == nil && strings.Contains(string(data), id) {
		_ = os.Remove(path)
	}
	return nil, fmt.Errorf("no kedge server answered within %s (is it running with --data-dir %s?): nothing was changed; the CAs are rotated in the running server only", wait, dataDir)
}

// printCARotation tells what a phase did and what comes next.
func printCARotation(out io.Writer, dataDir, phase string, res *certs.Result) error {
	if phase == certs.CAFinish {
		where := "on every server; every certificate is now of the new CAs"
		for _, p := range res.Servers {
			if p != certs.CAFinish {
				where = "on this server; not yet on every server (below)"
			}
		}
		fmt.Fprintln(out, "old CAs dropped from the bundles "+where)
	} else {
		fmt.Fprintf(out, "new CAs in place (cross-signed by the old ones; bundles of new and old): %d certificates issued again by them\n", len(res.Issued))
		fmt.Fprintln(out, "the other servers apply them within seconds, agents fetch the new bundles and renew within a minute; then run: kedge certificate rotate-ca --finish")
	}
	if len(res.Servers) > 0 {
		fmt.Fprintln(out, "servers (the phase each reported):")
		for _, name := range slices.Sorted(maps.Keys(res.Servers)) {
			p := res.Servers[name]
			if p == "" {
				p = "not yet (it applies the phase when it sees it; run the command again to check)"
			}
			fmt.Fprintf(out, "  %s: %s\n", name, p)
		}
	}
	for _, f := range []struct{ what, name string }{{"new servers and agents join with", "token"}, {"agents only", "agent-token"}} {
		path := filepath.Join(dataDir, "server", f.name)
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "%s (%s):\n%s\n", f.what, path, strings.TrimSpace(string(data)))
	}
	fmt.Fprintln(out, "copies of the admin kubeconfig made before must be copied again (/etc/kedge/kedge.yaml was rewritten)")
	return nil
}
