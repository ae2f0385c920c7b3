// Package etcdsnapshot saves, lists, prunes and restores snapshots of a
// server's embedded etcd, and runs them on a cron schedule as a component.
//
// A snapshot is the file etcd's Maintenance.Snapshot streams (its bbolt
// database followed by a sha256 trailer), optionally zstd-compressed, named
// <prefix>-<node>-<unix time>[.zst] in the snapshot dir (0700; files 0600).
// Before each snapshot the server stores the cluster's CAs, sealed with a
// key derived from the join token, under BootstrapKey: a snapshot carries
// what a new machine needs to restore the cluster with the same CAs.
//
//	info, err := etcdsnapshot.Save(ctx, client, etcdsnapshot.SaveOptions{Dir: dir, Prefix: etcdsnapshot.OnDemandPrefix, Node: "s1"})
//	p, err := etcdsnapshot.Prepare(etcdsnapshot.RestoreOptions{Snapshot: info.Path, EtcdDir: db + "/etcd", Name: "s1", PeerURL: "https://10.0.0.1:2380"})
//	if err == nil { aside, err = p.Commit() }
package etcdsnapshot
