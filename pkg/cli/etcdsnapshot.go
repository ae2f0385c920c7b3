package cli

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kedge-io/kedge/pkg/etcdsnapshot"
	"github.com/kedge-io/kedge/pkg/server"
)

// snapshotSaveTimeout bounds `kedge etcd-snapshot save`.
const snapshotSaveTimeout = 10 * time.Minute

// snapshotTarget is where the snapshot commands work: the server's data
// dir, snapshot dir and node name, from the flags or else the server's
// config file.
type snapshotTarget struct {
	dataDir, dir, node string
	compress           bool
	retention          int
}

// newEtcdSnapshotCommand is `kedge etcd-snapshot save|ls|delete|prune`, run
// on a server. save asks the local etcd member for a snapshot with the
// server's etcd client certificate; the others work on the snapshot dir.
func newEtcdSnapshotCommand() *cobra.Command {
	own := pflag.NewFlagSet("etcd-snapshot", pflag.ContinueOnError)
	config := own.StringP("config", "c", DefaultConfigFile, "the server's config file, for the flags below not given")
	own.StringP("data-dir", "d", server.DefaultDataDir, "directory of the server's state")
	own.String("etcd-snapshot-dir", "", "directory of the snapshots (default <data-dir>/server/db/snapshots)")
	own.Bool("etcd-snapshot-compress", false, "compress with zstd (save)")
	own.String("node-name", "", "this server's node name (default the hostname)")
	cmd := &cobra.Command{
		Use:   "etcd-snapshot",
		Short: "Save, list, delete and prune etcd snapshots (on a server)",
		Long: "Snapshots of the server's etcd, in <data-dir>/server/db/snapshots (or --etcd-snapshot-dir), named " +
			"<prefix>-<node>-<unix time>[.zst]. Restore one with `kedge server --cluster-reset-restore-path FILE`. " +
			"Flags not given are read from the server's config file.",
	}
	cmd.PersistentFlags().AddFlagSet(own)
	target := func() (snapshotTarget, error) { return resolveSnapshotTarget(own, *config) }

	var name string
	save := &cobra.Command{
		Use:   "save",
		Short: "Take a snapshot of etcd now",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			t, err := target()
			if err != nil {
				return err
			}
			return withLocalEtcdTimeout(t.dataDir, snapshotSaveTimeout, func(ctx context.Context, client *clientv3.Client) error {
				sealed, err := server.SealedCAs(t.dataDir)
				if err != nil {
					return fmt.Errorf("--data-dir %s: the cluster's CAs and token: %w", t.dataDir, err)
				}
				begin := time.Now()
				in, err := etcdsnapshot.Save(ctx, client, etcdsnapshot.SaveOptions{Dir: t.dir, Prefix: name, Node: t.node, Compress: t.compress, Bootstrap: sealed})
				if err != nil {
					return err
				}
				fmt.Fprintf(c.OutOrStdout(), "saved snapshot %s (%s) in %s, took %s\n", in.Name, humanBytes(in.Size), in.Path, time.Since(begin).Round(time.Millisecond))
				return nil
			})
		},
	}
	save.Flags().StringVar(&name, "name", etcdsnapshot.OnDemandPrefix, "prefix of the snapshot's name")

	ls := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List the snapshots: name, size, created, node",
		Args:    cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			t, err := target()
			if err != nil {
				return err
			}
			list, err := etcdsnapshot.List(t.dir, t.node)
			if err != nil {
				return err
			}
			printSnapshots(c.OutOrStdout(), list)
			return nil
		},
	}

	del := &cobra.Command{
		Use:     "delete NAME...",
		Aliases: []string{"rm"},
		Short:   "Delete snapshots by name",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			t, err := target()
			if err != nil {
				return err
			}
			deleted, err := etcdsnapshot.Delete(t.dir, args)
			for _, in := range deleted {
				fmt.Fprintf(c.OutOrStdout(), "deleted snapshot %s\n", in.Name)
			}
			return err
		},
	}

	var prefix string
	var keep int
	prune := &cobra.Command{
		Use:   "prune",
		Short: "Delete this server's snapshots with a prefix but the newest --snapshot-retention",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			t, err := target()
			if err != nil {
				return err
			}
			if !c.Flags().Changed("snapshot-retention") {
				keep = t.retention
			}
			deleted, err := etcdsnapshot.Prune(t.dir, prefix, t.node, keep)
			for _, in := range deleted {
				fmt.Fprintf(c.OutOrStdout(), "deleted snapshot %s\n", in.Name)
			}
			if err == nil && len(deleted) == 0 {
				fmt.Fprintf(c.OutOrStdout(), "nothing to prune: at most %d snapshots %s-%s-* in %s\n", keep, prefix, t.node, t.dir)
			}
			return err
		},
	}
	prune.Flags().StringVar(&prefix, "name", etcdsnapshot.OnDemandPrefix, "prefix of the snapshots to prune ("+etcdsnapshot.ScheduledPrefix+" for the scheduled ones)")
	prune.Flags().IntVar(&keep, "snapshot-retention", etcdsnapshot.DefaultRetention, "snapshots to keep (default the server's --etcd-snapshot-retention)")

	cmd.AddCommand(save, ls, del, prune)
	return cmd
}

// resolveSnapshotTarget takes each setting from own when given there, else
// from the server's config file (as `kedge server` would read it), else
// the server's default.
func resolveSnapshotTarget(own *pflag.FlagSet, config string) (snapshotTarget, error) {
	sf := &serverFlags{}
	fs := pflag.NewFlagSet("server", pflag.ContinueOnError)
	sf.register(fs)
	if err := applyConfigFile(fs, config, own.Changed("config")); err != nil {
		return snapshotTarget{}, err
	}
	value := func(name string) string {
		if f := own.Lookup(name); f.Changed {
			return f.Value.String()
		}
		return fs.Lookup(name).Value.String()
	}
	t := snapshotTarget{retention: sf.snapshots.retention}
	var err error
	if t.dataDir, err = filepath.Abs(value("data-dir")); err != nil {
		return t, fmt.Errorf("--data-dir: %w", err)
	}
	t.dir = server.DefaultSnapshotDir(t.dataDir)
	if d := value("etcd-snapshot-dir"); d != "" {
		if t.dir, err = filepath.Abs(d); err != nil {
			return t, fmt.Errorf("--etcd-snapshot-dir: %w", err)
		}
	}
	t.compress = value("etcd-snapshot-compress") == "true"
	if t.node, err = parseNodeName(value("node-name")); err != nil {
		return t, err
	}
	return t, nil
}

// printSnapshots writes the snapshots as a table, oldest first.
func printSnapshots(w io.Writer, list []etcdsnapshot.Info) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSIZE\tCREATED\tNODE")
	for _, in := range list {
		node := in.Node
		if node == "" {
			node = "?"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", in.Name, humanBytes(in.Size), in.Created.UTC().Format(time.RFC3339), node)
	}
	_ = tw.Flush()
}

// humanBytes is n in B, KiB, MiB or GiB.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, exp := float64(n)/unit, 0
	for v >= unit && exp < 2 {
		v /= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", v, "KMG"[exp])
}
