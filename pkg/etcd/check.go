package etcd

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.etcd.io/etcd/server/v3/storage/wal"
	"go.etcd.io/etcd/server/v3/storage/wal/walpb"
	"go.uber.org/zap"
)

// ErrCorrupt means the member's data on disk cannot be used: its bbolt
// database fails bbolt's consistency check or its WAL cannot be replayed.
var ErrCorrupt = errors.New("etcd's data is damaged")

// errInUse: another process has the database open.
var errInUse = errors.New("in use by another process (is another kedge or etcd running on this data dir?)")

// CheckData checks the member data under dataDir (etcd's data-dir,
// <data-dir>/server/db/etcd) before etcd opens it: bbolt's consistency
// check of member/snap/db, and a replay of the WAL from its newest
// snapshot record. A missing data dir is a new member and passes. A torn
// last WAL record (a write cut by a power loss) passes: etcd repairs it.
// The error wraps ErrCorrupt and names the file.
//
// bbolt panics, in a goroutine of its own, on some damaged pages: that
// ends the process. CheckDataInChild runs CheckData in a child process.
func CheckData(dataDir string) error {
	member := filepath.Join(dataDir, "member")
	if _, err := os.Stat(member); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	db := filepath.Join(member, "snap", "db")
	if _, err := os.Stat(db); err == nil {
		if err := checkBolt(db); errors.Is(err, errInUse) {
			return fmt.Errorf("%s: %w", db, err)
		} else if err != nil {
			return fmt.Errorf("%w: %s: %v", ErrCorrupt, db, err)
		}
	}
	walDir := filepath.Join(member, "wal")
	if !wal.Exist(walDir) {
		return nil
	}
	lg := zap.NewNop()
	snaps, err := wal.ValidSnapshotEntries(lg, walDir)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: %s: the WAL cannot be read: %v", ErrCorrupt, walDir, err)
	}
	from := &walpb.Snapshot{}
	if len(snaps) > 0 {
		from = snaps[len(snaps)-1]
	}
	if _, err := wal.Verify(lg, walDir, from); err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: %s: the WAL cannot be replayed: %v", ErrCorrupt, walDir, err)
	}
	return nil
}

// checkBolt runs bbolt's consistency check on a read-only open of path. A
// damaged file can make bbolt panic instead of returning an error.
func checkBolt(path string) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("bbolt: %v", r)
		}
	}()
	db, err := bolt.Open(path, 0o400, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if errors.Is(err, bolt.ErrTimeout) {
		return errInUse
	} else if err != nil {
		return err
	}
	defer db.Close()
	var problems []string
	err = db.View(func(tx *bolt.Tx) error {
		for e := range tx.Check() {
			if len(problems) < 5 {
				problems = append(problems, e.Error())
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if len(problems) > 0 {
		return errors.New("bbolt check: " + strings.Join(problems, "; "))
	}
	return nil
}
