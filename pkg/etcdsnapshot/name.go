package etcdsnapshot

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Name prefixes of kedge's snapshots.
const (
	// ScheduledPrefix names the snapshots the schedule takes.
	ScheduledPrefix = "etcd-snapshot"
	// OnDemandPrefix names those of `kedge etcd-snapshot save` without --name.
	OnDemandPrefix = "on-demand"
	// CompressedExt ends the name of a zstd-compressed snapshot.
	CompressedExt = ".zst"
)

// File and directory modes of snapshots.
const (
	DirMode  fs.FileMode = 0o700
	FileMode fs.FileMode = 0o600
)

// Info describes one snapshot file.
type Info struct {
	Name       string    // file name, e.g. etcd-snapshot-s1-1767225600.zst
	Path       string    // absolute path
	Size       int64     // bytes on disk
	Created    time.Time // the unix time in its name
	Prefix     string    // "" when the node could not be told from the prefix
	Node       string    // the server that took it; "" when not known
	Compressed bool
}

// snapshotName matches <prefix>-<node>-<unix time>[.zst].
var snapshotName = regexp.MustCompile(`^([A-Za-z0-9][A-Za-z0-9._-]*)-([0-9]{9,12})(\.zst)?$`)

// FileName is the name of a snapshot of node taken at t.
func FileName(prefix, node string, t time.Time, compressed bool) string {
	name := fmt.Sprintf("%s-%s-%d", prefix, node, t.Unix())
	if compressed {
		name += CompressedExt
	}
	return name
}

// CheckPrefix refuses a --name that cannot start a snapshot's file name.
func CheckPrefix(prefix string) error {
	if prefix == "" || strings.ContainsAny(prefix, `/\`) || !snapshotName.MatchString(prefix+"-x-100000000") {
		return fmt.Errorf("--name %q: want letters, digits, '.', '_' or '-', starting with a letter or digit (the file is <name>-<node>-<unix time>)", prefix)
	}
	return nil
}

// parseName reads a snapshot's file name. The node is known when the name
// ends in -<localNode>-<time> or starts with one of kedge's own prefixes.
func parseName(name, localNode string) (Info, bool) {
	m := snapshotName.FindStringSubmatch(name)
	if m == nil {
		return Info{}, false
	}
	sec, err := strconv.ParseInt(m[2], 10, 64)
	if err != nil {
		return Info{}, false
	}
	in := Info{Name: name, Created: time.Unix(sec, 0), Compressed: m[3] != ""}
	rest := m[1]
	switch {
	case localNode != "" && strings.HasSuffix(rest, "-"+localNode):
		in.Prefix, in.Node = strings.TrimSuffix(rest, "-"+localNode), localNode
	case strings.HasPrefix(rest, ScheduledPrefix+"-"):
		in.Prefix, in.Node = ScheduledPrefix, strings.TrimPrefix(rest, ScheduledPrefix+"-")
	case strings.HasPrefix(rest, OnDemandPrefix+"-"):
		in.Prefix, in.Node = OnDemandPrefix, strings.TrimPrefix(rest, OnDemandPrefix+"-")
	}
	return in, true
}

// List returns the snapshots in dir, oldest first; localNode tells this
// server's own snapshots apart whatever their prefix. A dir that does not
// exist holds none.
func List(dir, localNode string) ([]Info, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("snapshot dir %s: %w", dir, err)
	}
	var out []Info
	for _, e := range entries {
		in, ok := parseName(e.Name(), localNode)
		if !ok || !e.Type().IsRegular() {
			continue
		}
		st, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		in.Path, in.Size = filepath.Join(dir, e.Name()), st.Size()
		out = append(out, in)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.Before(out[j].Created)
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

// Newest is the most recent snapshot in dir, or false when there is none.
func Newest(dir, localNode string) (Info, bool, error) {
	list, err := List(dir, localNode)
	if err != nil || len(list) == 0 {
		return Info{}, false, err
	}
	return list[len(list)-1], true, nil
}

// Prune deletes node's snapshots with prefix in dir but the newest keep
// ones, and returns what it deleted. keep must be at least 1.
func Prune(dir, prefix, node string, keep int) ([]Info, error) {
	if keep < 1 {
		return nil, fmt.Errorf("--snapshot-retention %d: keep at least 1 snapshot", keep)
	}
	list, err := List(dir, node)
	if err != nil {
		return nil, err
	}
	var mine []Info
	for _, in := range list {
		if in.Prefix == prefix && in.Node == node {
			mine = append(mine, in)
		}
	}
	if len(mine) <= keep {
		return nil, nil
	}
	var deleted []Info
	var errs []error
	for _, in := range mine[:len(mine)-keep] {
		if err := os.Remove(in.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		deleted = append(deleted, in)
	}
	return deleted, errors.Join(errs...)
}

// Delete removes the named snapshots from dir. Every name must be a
// snapshot there; if one is not, nothing is deleted.
func Delete(dir string, names []string) ([]Info, error) {
	list, err := List(dir, "")
	if err != nil {
		return nil, err
	}
	byName := map[string]Info{}
	for _, in := range list {
		byName[in.Name] = in
	}
	var todo []Info
	for _, n := range names {
		in, ok := byName[n]
		if !ok {
			return nil, fmt.Errorf("no snapshot %q in %s (see `kedge etcd-snapshot ls`); nothing deleted", n, dir)
		}
		todo = append(todo, in)
	}
	var deleted []Info
	for _, in := range todo {
		if err := os.Remove(in.Path); err != nil {
			return deleted, err
		}
		deleted = append(deleted, in)
	}
	return deleted, nil
}
