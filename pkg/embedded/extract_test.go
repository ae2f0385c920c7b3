package embedded

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"testing/fstest"

	"github.com/klauspost/compress/zstd"
)

// fakeFiles is a complete asset tree with tiny contents, before packing.
// Extract sets the modes by directory (bin/ 0755, images/ 0644).
func fakeFiles() fstest.MapFS {
	return fstest.MapFS{
		"bin/runc":         {Data: []byte("runc")},
		shimAsset:          {Data: []byte("shim")},
		"bin/bridge":       {Data: []byte("bridge")},
		"bin/host-local":   {Data: []byte("host-local")},
		"bin/loopback":     {Data: []byte("loopback")},
		"bin/portmap":      {Data: []byte("portmap")},
		"images/pause.tar": {Data: []byte("pause image")},
	}
}

// fakeAssets is fakeFiles packed.
func fakeAssets() fstest.MapFS { return pack(fakeFiles()) }

// pack does what scripts/build-helpers.sh does: the manifest and a
// zstd-compressed tar (with directory entries, as GNU tar writes them) of
// files, plus a stamp and .gitkeep that Extract must ignore.
func pack(files fstest.MapFS) fstest.MapFS {
	var manifest, archive bytes.Buffer
	zw, err := zstd.NewWriter(&archive)
	if err != nil {
		panic(err)
	}
	tw := tar.NewWriter(zw)
	dirs := map[string]bool{}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		data := files[name].Data
		mode := int64(0o644)
		if strings.HasPrefix(name, "bin/") {
			mode = 0o755
		}
		if dir := path.Dir(name); !dirs[dir] {
			dirs[dir] = true
			must(tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir + "/", Mode: 0o755}))
		}
		must(tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data))}))
		_, err := tw.Write(data)
		must(err)
		fmt.Fprintf(&manifest, "%x %04o %d %s\n", sha256.Sum256(data), mode, len(data), name)
	}
	must(tw.Close())
	must(zw.Close())
	return fstest.MapFS{
		".gitkeep":   {},
		"stamps":     {Data: []byte("runc v0 stamp\n")},
		manifestFile: {Data: manifest.Bytes()},
		archiveFile:  {Data: archive.Bytes()},
	}
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}

func TestExtractLayoutAndModes(t *testing.T) {
	dataDir := t.TempDir()
	a, err := ExtractFS(fakeAssets(), dataDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Hash) != 16 || a.Dir != filepath.Join(dataDir, "data", a.Hash) {
		t.Errorf("Dir %q Hash %q, want <dataDir>/data/<16 hex digits>", a.Dir, a.Hash)
	}
	if a.BinDir != filepath.Join(a.Dir, "bin") || a.Runc != filepath.Join(a.BinDir, "runc") ||
		a.PauseImageTar != filepath.Join(a.Dir, "images", "pause.tar") || a.PauseImage != PauseImage {
		t.Errorf("Assets = %+v", a)
	}
	for name, mode := range map[string]fs.FileMode{
		"bin/runc": 0o755, shimAsset: 0o755, "bin/bridge": 0o755, "bin/host-local": 0o755, "bin/loopback": 0o755,
		"bin/portmap": 0o755, "images/pause.tar": 0o644,
	} {
		p := filepath.Join(a.Dir, name)
		info, err := os.Lstat(p)
		if err != nil {
			t.Error(err)
			continue
		}
		if !info.Mode().IsRegular() || info.Mode().Perm() != mode {
			t.Errorf("%s: mode %v, want %v", name, info.Mode(), mode)
		}
		if data, _ := os.ReadFile(p); string(data) != string(fakeFiles()[name].Data) {
			t.Errorf("%s: content %q", name, data)
		}
	}
	for _, skipped := range []string{".gitkeep", "stamps", manifestFile, archiveFile} {
		if _, err := os.Lstat(filepath.Join(a.Dir, skipped)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s extracted, want it skipped (err %v)", skipped, err)
		}
	}
	entries, _ := os.ReadDir(filepath.Join(dataDir, "data"))
	if len(entries) != 1 {
		t.Errorf("data dir holds %d entries, want only %s (temporary dirs left?)", len(entries), a.Hash)
	}
}

func TestExtractIdempotent(t *testing.T) {
	dataDir := t.TempDir()
	a1, err := ExtractFS(fakeAssets(), dataDir)
	if err != nil {
		t.Fatal(err)
	}
	inode := func() uint64 {
		info, err := os.Stat(a1.Runc)
		if err != nil {
			t.Fatal(err)
		}
		return info.Sys().(*syscall.Stat_t).Ino
	}
	before := inode()
	a2, err := ExtractFS(fakeAssets(), dataDir)
	if err != nil {
		t.Fatal(err)
	}
	if a1 != a2 {
		t.Errorf("second Extract = %+v, want %+v", a2, a1)
	}
	if inode() != before {
		t.Error("second Extract rewrote an intact directory")
	}

	// A different build lands in its own directory; the old one stays.
	changed := fakeFiles()
	changed["bin/runc"] = &fstest.MapFile{Data: []byte("runc v2")}
	a3, err := ExtractFS(pack(changed), dataDir)
	if err != nil {
		t.Fatal(err)
	}
	if a3.Hash == a1.Hash {
		t.Error("changed content, same hash")
	}
	if _, err := os.Stat(a1.Runc); err != nil {
		t.Errorf("older build's directory removed: %v", err)
	}
}

func TestExtractRepairsDamage(t *testing.T) {
	dataDir := t.TempDir()
	a, err := ExtractFS(fakeAssets(), dataDir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(a.BinDir, "bridge")); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(a.Runc, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ExtractFS(fakeAssets(), dataDir); err != nil {
		t.Fatal(err)
	}
	if err := verify(a.Dir, mustList(t, fakeAssets())); err != nil {
		t.Errorf("after repair: %v", err)
	}
	entries, _ := os.ReadDir(filepath.Join(dataDir, "data"))
	if len(entries) != 1 {
		t.Errorf("data dir holds %d entries after repair, want 1", len(entries))
	}
}

func mustList(t *testing.T, fsys fs.FS) []assetFile {
	t.Helper()
	files, _, err := readManifest(fsys)
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func TestExtractWithoutAssets(t *testing.T) {
	_, err := ExtractFS(fstest.MapFS{".gitkeep": {}}, t.TempDir())
	if !errors.Is(err, ErrNotBuilt) {
		t.Fatalf("err = %v, want ErrNotBuilt", err)
	}
	const want = `kedge was built without its helper binaries (runc, CNI plugins, pause image): build it with "make build"`
	if err.Error() != want {
		t.Errorf("err = %q, want %q", err, want)
	}
}

func TestExtractIncompleteAssets(t *testing.T) {
	m := fakeFiles()
	delete(m, shimAsset)
	delete(m, "bin/portmap")
	delete(m, "images/pause.tar")
	_, err := ExtractFS(pack(m), t.TempDir())
	if want := shimAsset + ", bin/portmap, images/pause.tar"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("err = %v, want it to name %s", err, want)
	}
}

func TestExtractArgs(t *testing.T) {
	if _, err := ExtractFS(fakeAssets(), ""); err == nil {
		t.Error("empty data dir accepted")
	}
}

// TestExtractChecksContent: an archive that does not match its manifest is
// refused, and nothing is left in the data dir.
func TestExtractChecksContent(t *testing.T) {
	good := fakeAssets()
	other := pack(func() fstest.MapFS {
		f := fakeFiles()
		f["bin/runc"] = &fstest.MapFile{Data: []byte("cnur")} // same size, other bytes
		return f
	}())
	missing := pack(func() fstest.MapFS {
		f := fakeFiles()
		delete(f, "bin/loopback")
		return f
	}())
	cases := map[string]struct {
		fsys fstest.MapFS
		want string
	}{
		"content":  {fstest.MapFS{manifestFile: good[manifestFile], archiveFile: other[archiveFile]}, "SHA-256"},
		"missing":  {fstest.MapFS{manifestFile: good[manifestFile], archiveFile: missing[archiveFile]}, "bin/loopback"},
		"corrupt":  {fstest.MapFS{manifestFile: good[manifestFile], archiveFile: {Data: []byte("not zstd")}}, archiveFile},
		"manifest": {fstest.MapFS{manifestFile: {Data: []byte("0 0755 1 bin/runc\n")}, archiveFile: good[archiveFile]}, "sha256"},
		"escape":   {fstest.MapFS{manifestFile: {Data: []byte(strings.Repeat("0", 64) + " 0755 1 ../runc\n")}}, "name"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			dataDir := t.TempDir()
			_, err := ExtractFS(c.fsys, dataDir)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %v, want it to mention %q", err, c.want)
			}
			if entries, _ := os.ReadDir(filepath.Join(dataDir, "data")); len(entries) != 0 {
				t.Errorf("data dir holds %d entries after a failed extraction", len(entries))
			}
		})
	}
}

// LocateFS names the paths ExtractFS fills, and writes nothing.
func TestLocateMatchesExtract(t *testing.T) {
	dataDir := t.TempDir()
	located, err := LocateFS(fakeAssets(), dataDir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dataDir, "data")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("LocateFS wrote %s/data (stat: %v)", dataDir, err)
	}
	extracted, err := ExtractFS(fakeAssets(), dataDir)
	if err != nil {
		t.Fatal(err)
	}
	if located != extracted {
		t.Errorf("LocateFS %+v, ExtractFS %+v", located, extracted)
	}
	if _, err := LocateFS(fstest.MapFS{".gitkeep": {}}, dataDir); !errors.Is(err, ErrNotBuilt) {
		t.Errorf("LocateFS without assets: %v, want ErrNotBuilt", err)
	}
}
