package containerd

import (
	"archive/tar"
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/containerd/containerd/v2/pkg/archive"
	"github.com/containerd/containerd/v2/pkg/archive/compression"
)

// FuzzApplyLayer unpacks any layer the way containerd, which runs in the
// kedge process, unpacks an imported image's layers into a snapshot
// (decompressed, then archive.Apply into a directory under the data dir):
// it never panics and writes nothing outside that directory, through
// "..", absolute paths, symlinks or hard links.
func FuzzApplyLayer(f *testing.F) {
	all := tarOf(f, hostileLayer...)
	gz, zst := compressed(f, all)
	f.Add(all)
	f.Add(gz)
	f.Add(zst)
	for _, e := range hostileLayer {
		f.Add(tarOf(f, e))
	}
	for _, seed := range [][]entry{
		{link(tar.TypeSymlink, "a", "../outside"), link(tar.TypeSymlink, "a/b", "x")},
		{link(tar.TypeSymlink, "a", "/tmp"), file("a/kedge-fuzz-escaped", "x")},
		{link(tar.TypeSymlink, "a", "."), link(tar.TypeSymlink, "a/a", "..")},
		{file("d/.wh..wh..opq", ""), file(".wh.d", ""), file(".wh...", "")},
		{link(tar.TypeLink, "h", "h")},
		{entry{tar.Header{Name: "d", Typeflag: tar.TypeDir, Mode: 0o7777}, ""}, file("d/../../outside/sentinel", "overwritten")},
		{entry{tar.Header{Name: "x", Typeflag: tar.TypeReg, PAXRecords: map[string]string{"SCHILY.xattr.user.x": "y"}}, ""}},
	} {
		f.Add(tarOf(f, seed...))
	}
	f.Add(headerOnly(f, tar.Header{Name: "big", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1 << 40}))
	f.Fuzz(func(t *testing.T, layer []byte) {
		top := t.TempDir()
		sentinel := writeSentinel(t, top)
		root := filepath.Join(top, "data", "agent", "containerd", "snapshots", "1", "fs")
		if err := os.MkdirAll(root, 0o755); err != nil {
			t.Fatal(err)
		}
		if r, err := compression.DecompressStream(bytes.NewReader(layer)); err == nil {
			_, _ = archive.Apply(context.Background(), root, r)
			r.Close()
		}
		checkOutside(t, top, sentinel)
		checkNoLinkOut(t, root, filepath.Join(top, "outside", "sentinel"), "/etc/passwd")
	})
}

// checkNoLinkOut fails if a file under root is a hard link to one of the
// files outside it.
func checkNoLinkOut(t *testing.T, root string, outside ...string) {
	t.Helper()
	type inode struct{ dev, ino uint64 }
	of := func(info fs.FileInfo) inode {
		st := info.Sys().(*syscall.Stat_t)
		return inode{uint64(st.Dev), st.Ino}
	}
	inodes := map[inode]string{}
	for _, p := range outside {
		if info, err := os.Stat(p); err == nil {
			inodes[of(info)] = p
		}
	}
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		if info, err := d.Info(); err == nil {
			if target, ok := inodes[of(info)]; ok {
				t.Errorf("%s is a hard link to %s, outside the root", p, target)
			}
		}
		return nil
	})
}
