package etcdsnapshot

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/klauspost/compress/zstd"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// SaveOptions says where a snapshot goes and what it is named.
type SaveOptions struct {
	Dir      string // the snapshot dir, created 0700
	Prefix   string // ScheduledPrefix, OnDemandPrefix or the user's --name
	Node     string // this server's node name
	Compress bool   // zstd
	// Bootstrap, when set, is stored under BootstrapKey just before the
	// snapshot is taken (the sealed CAs: Seal).
	Bootstrap []byte
	Now       time.Time // zero: time.Now()
}

// hasChecksum reports whether a snapshot of n bytes ends in etcd's sha256
// trailer: etcd pads the database to 512-byte pages and appends the hash.
func hasChecksum(n int64) bool { return n%512 == sha256.Size }

// Save streams a snapshot of the member client talks to (one endpoint)
// into opts.Dir, through a .part file, fsynced and renamed into place.
func Save(ctx context.Context, client *clientv3.Client, opts SaveOptions) (Info, error) {
	if err := CheckPrefix(opts.Prefix); err != nil {
		return Info{}, err
	}
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	if err := ensureDir(opts.Dir); err != nil {
		return Info{}, err
	}
	name := FileName(opts.Prefix, opts.Node, now, opts.Compress)
	path := filepath.Join(opts.Dir, name)
	if _, err := os.Lstat(path); err == nil {
		return Info{}, fmt.Errorf("snapshot %s exists already (one per prefix and second)", path)
	}
	if opts.Bootstrap != nil {
		if _, err := client.Put(ctx, BootstrapKey, string(opts.Bootstrap)); err != nil {
			return Info{}, fmt.Errorf("store the cluster's sealed CAs in etcd: %w", err)
		}
	}
	part := path + ".part"
	f, err := os.OpenFile(part, os.O_WRONLY|os.O_CREATE|os.O_EXCL, FileMode)
	if err != nil {
		return Info{}, err
	}
	ok := false
	defer func() {
		if !ok {
			_ = f.Close()
			_ = os.Remove(part)
		}
	}()
	resp, err := client.SnapshotWithVersion(ctx)
	if err != nil {
		return Info{}, fmt.Errorf("etcd snapshot: %w", err)
	}
	defer resp.Snapshot.Close()
	var w io.Writer = f
	var enc *zstd.Encoder
	if opts.Compress {
		if enc, err = zstd.NewWriter(f, zstd.WithEncoderConcurrency(1)); err != nil {
			return Info{}, err
		}
		w = enc
	}
	n, err := io.Copy(w, resp.Snapshot)
	if err != nil {
		return Info{}, fmt.Errorf("etcd snapshot: receive: %w", err)
	}
	if !hasChecksum(n) {
		return Info{}, fmt.Errorf("etcd snapshot: %d bytes without etcd's sha256 trailer (the stream ended early)", n)
	}
	if enc != nil {
		if err := enc.Close(); err != nil {
			return Info{}, err
		}
	}
	if err := f.Sync(); err != nil {
		return Info{}, err
	}
	if err := f.Close(); err != nil {
		return Info{}, err
	}
	if err := os.Rename(part, path); err != nil {
		return Info{}, err
	}
	ok = true
	syncDir(opts.Dir)
	st, err := os.Stat(path)
	if err != nil {
		return Info{}, err
	}
	in, _ := parseName(name, opts.Node)
	in.Path, in.Size = path, st.Size()
	return in, nil
}

// ensureDir creates the snapshot dir 0700, and tightens an existing one.
func ensureDir(dir string) error {
	if dir == "" || !filepath.IsAbs(dir) {
		return fmt.Errorf("--etcd-snapshot-dir %q: want an absolute path", dir)
	}
	if err := os.MkdirAll(dir, DirMode); err != nil {
		return fmt.Errorf("--etcd-snapshot-dir %s: %w", dir, err)
	}
	st, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if !st.IsDir() {
		return fmt.Errorf("--etcd-snapshot-dir %s: not a directory", dir)
	}
	if st.Mode().Perm() != DirMode {
		return os.Chmod(dir, DirMode)
	}
	return nil
}

// syncDir makes a rename in dir durable (best effort).
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
}

// isNotExist is errors.Is(err, fs.ErrNotExist).
func isNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }
