package etcdsnapshot

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
	bolt "go.etcd.io/bbolt"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
)

// InitialClusterToken is etcd's initial-cluster-token kedge's members use
// (etcd's default; kedge does not set it).
const InitialClusterToken = "etcd-cluster"

// zstdMagic starts every zstd frame.
var zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}

// RestoreOptions says which snapshot becomes which member's data.
type RestoreOptions struct {
	Snapshot string // the snapshot file, compressed or not
	// EtcdDir is etcd's data-dir (<data-dir>/server/db/etcd). It is left
	// alone until Commit, which moves it aside.
	EtcdDir string
	Name    string // the member's name (the node name)
	PeerURL string // the member's peer URL (https://<advertise>:2380)
}

// Prepared is a snapshot restored, with etcd's hash check, next to the
// data dir it replaces on Commit.
type Prepared struct {
	opts RestoreOptions
	dir  string // the restored data-dir, <EtcdDir>.restoring
	temp string // the decompressed snapshot, if any
	// Bootstrap is the sealed CAs stored in the snapshot (nil: none, a
	// snapshot of a cluster from before kedge stored them).
	Bootstrap []byte
	// Revision is the snapshot's latest revision.
	Revision int64
}

// Prepare restores opts.Snapshot into a new single-member data dir beside
// opts.EtcdDir, verified by etcd's sha256 check. Nothing existing is
// changed: on error the restored copy is removed; on success Commit puts
// it in place or Discard removes it.
func Prepare(opts RestoreOptions) (*Prepared, error) {
	src := opts.Snapshot
	st, err := os.Stat(src)
	if isNotExist(err) {
		return nil, fmt.Errorf("%s: no such file (see `kedge etcd-snapshot ls` for the snapshots of this server)", src)
	} else if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a snapshot file", src)
	}
	p := &Prepared{opts: opts, dir: opts.EtcdDir + ".restoring"}
	ok := false
	defer func() {
		if !ok {
			p.Discard()
		}
	}()
	if err := os.MkdirAll(filepath.Dir(opts.EtcdDir), DirMode); err != nil {
		return nil, err
	}
	if compressed, err := isCompressed(src); err != nil {
		return nil, err
	} else if compressed {
		p.temp = filepath.Join(filepath.Dir(opts.EtcdDir), ".restore-"+strconv.FormatInt(time.Now().UnixNano(), 10)+".db")
		if err := decompress(src, p.temp); err != nil {
			return nil, fmt.Errorf("%s: not a complete zstd-compressed snapshot (truncated or damaged): %w", src, err)
		}
		src = p.temp
	}
	if st, err := os.Stat(src); err != nil {
		return nil, err
	} else if !hasChecksum(st.Size()) {
		return nil, fmt.Errorf("%s: %d bytes, not an etcd snapshot ending in its sha256 trailer (truncated, or not a snapshot)", opts.Snapshot, st.Size())
	}
	if err := os.RemoveAll(p.dir); err != nil {
		return nil, err
	}
	err = snapshot.NewV3(zap.NewNop()).Restore(snapshot.RestoreConfig{
		SnapshotPath:        src,
		Name:                opts.Name,
		OutputDataDir:       p.dir,
		PeerURLs:            []string{opts.PeerURL},
		InitialCluster:      opts.Name + "=" + opts.PeerURL,
		InitialClusterToken: InitialClusterToken,
	})
	if err != nil && strings.Contains(err.Error(), "expected sha256") {
		return nil, fmt.Errorf("%s: failed etcd's sha256 integrity check: the file is damaged", opts.Snapshot)
	} else if err != nil {
		return nil, fmt.Errorf("%s: restore failed: %w", opts.Snapshot, err)
	}
	if p.Bootstrap, p.Revision, err = readBootstrap(filepath.Join(p.dir, "member", "snap", "db")); err != nil {
		return nil, fmt.Errorf("%s: read the restored database: %w", opts.Snapshot, err)
	}
	ok = true
	return p, nil
}

// Commit moves the member's current data dir (if any) aside to
// <EtcdDir>-old-<unix time> and puts the restored one in its place. It
// returns where the old data went ("" when there was none).
func (p *Prepared) Commit() (string, error) {
	aside := ""
	if _, err := os.Stat(p.opts.EtcdDir); err == nil {
		aside = p.opts.EtcdDir + "-old-" + strconv.FormatInt(time.Now().Unix(), 10)
		if err := os.Rename(p.opts.EtcdDir, aside); err != nil {
			return "", fmt.Errorf("move the old etcd data aside: %w", err)
		}
	} else if !isNotExist(err) {
		return "", err
	}
	if err := os.Rename(p.dir, p.opts.EtcdDir); err != nil {
		if aside != "" {
			_ = os.Rename(aside, p.opts.EtcdDir)
		}
		return "", fmt.Errorf("put the restored etcd data in place: %w", err)
	}
	syncDir(filepath.Dir(p.opts.EtcdDir))
	if p.temp != "" {
		_ = os.Remove(p.temp)
	}
	return aside, nil
}

// Discard removes the restored copy; the existing data stays as it was.
func (p *Prepared) Discard() {
	_ = os.RemoveAll(p.dir)
	if p.temp != "" {
		_ = os.Remove(p.temp)
	}
}

func isCompressed(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	head := make([]byte, len(zstdMagic))
	if _, err := io.ReadFull(f, head); err != nil {
		return false, fmt.Errorf("%s: too short to be a snapshot (%v)", path, err)
	}
	return bytes.Equal(head, zstdMagic), nil
}

func decompress(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	dec, err := zstd.NewReader(in, zstd.WithDecoderConcurrency(1))
	if err != nil {
		return err
	}
	defer dec.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, FileMode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, dec); err != nil {
		_ = out.Close()
		return err
	}
	return out.Close()
}

// readBootstrap finds the newest value of BootstrapKey in an etcd backend
// database, and its latest revision. The "key" bucket is ordered by
// revision: the newest is found walking back from the end.
func readBootstrap(dbPath string) ([]byte, int64, error) {
	db, err := bolt.Open(dbPath, 0o400, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		return nil, 0, err
	}
	defer db.Close()
	var blob []byte
	var rev int64
	err = db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("key"))
		if b == nil {
			return errors.New("no key bucket: not an etcd v3 database")
		}
		c := b.Cursor()
		for k, v := c.Last(); k != nil; k, v = c.Prev() {
			kv := &mvccpb.KeyValue{}
			if err := proto.Unmarshal(v, kv); err != nil {
				return fmt.Errorf("revision %x: %w", k, err)
			}
			if rev == 0 {
				rev = kv.ModRevision
			}
			if string(kv.Key) != BootstrapKey {
				continue
			}
			if len(k) == 18 && k[17] == 't' { // a tombstone: deleted
				return nil
			}
			blob = append([]byte(nil), kv.Value...)
			return nil
		}
		return nil
	})
	return blob, rev, err
}
