package containerd

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/images/archive"
	"github.com/containerd/containerd/v2/plugins/content/local"
	"github.com/containerd/platforms"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// hostileLayer is a layer that tries to write outside the root it is
// unpacked to.
var hostileLayer = []entry{
	file("../outside/escaped", "x"),
	file("/abs-escaped", "x"),
	link(tar.TypeSymlink, "up", "../outside"),
	file("up/through-symlink", "x"),
	link(tar.TypeSymlink, "root", "/"),
	file("root/tmp/kedge-fuzz-through-root", "x"),
	link(tar.TypeLink, "hard", "../outside/sentinel"),
	link(tar.TypeLink, "passwd", "/etc/passwd"),
	{tar.Header{Name: "dev", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 3}, ""},
}

// archiveSeeds are image tarballs, real and hostile.
func archiveSeeds(tb testing.TB) [][]byte {
	oci, docker := testArchives(tb, file("hello", "world"))
	ociGz, ociZst := compressed(tb, oci)
	hostileOCI, hostileDocker := testArchives(tb, hostileLayer[:8]...)
	seeds := [][]byte{oci, docker, ociGz, ociZst, hostileOCI, hostileDocker,
		nil, []byte("not a tarball"), oci[:len(oci)/2], ociGz[:len(ociGz)/2], ociZst[:len(ociZst)-9],
		// zstd frames: a bad block, a 512 MiB window with no content, a skippable frame.
		{0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x00, 0xff, 0xff, 0xff},
		{0x28, 0xb5, 0x2f, 0xfd, 0x00, 0xf0, 0x01, 0x00, 0x00},
		{0x50, 0x2a, 0x4d, 0x18, 0x04, 0x00, 0x00, 0x00, 0, 0, 0, 0},
		zstdWindow(29), zstdWindow(27),
		tarOf(tb, file("oci-layout", `{"imageLayoutVersion":"1.0.0"}`)),
		tarOf(tb, file("oci-layout", `{"imageLayoutVersion":"9"}`), file("index.json", "{}")),
		tarOf(tb, file("oci-layout", `{"imageLayoutVersion":"1.0.0"}`), file("index.json", `{"manifests":[{"digest":"sha256:`+strings.Repeat("0", 64)+`","size":1}]}`)),
		tarOf(tb, file("manifest.json", `[{"Config":"../../etc/passwd","Layers":["/etc/shadow"]}]`)),
		tarOf(tb, file("manifest.json", `[{"Config":"c","RepoTags":["Not A Ref!"],"Layers":[]}]`), file("c", "{}")),
		tarOf(tb, file("manifest.json", `[{"Config":"c","Layers":["s"]}]`), file("c", "{}"), link(tar.TypeSymlink, "s", "../../etc/passwd")),
		tarOf(tb, file("manifest.json", `[{"Config":"c","Layers":["s"]}]`), file("c", "{}"), link(tar.TypeSymlink, "s", "s")),
		tarOf(tb, file("manifest.json", "null")),
		tarOf(tb, file("index.json", strings.Repeat("[", 100000))),
		tarOf(tb, entry{tar.Header{Name: strings.Repeat("a/", 5000) + "x", PAXRecords: map[string]string{"comment": strings.Repeat("c", 1<<16)}}, "x"}),
	}
	return seeds
}

// zstdWindow is a zstd frame announcing a window of 1<<log bytes, whose
// one block holds a single byte.
func zstdWindow(log byte) []byte {
	return []byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, (log - 10) << 3, 0x09, 0x00, 0x00, 'x'}
}

// FuzzReadArchive reads any file as an image tarball the way ImportFile
// does before it hands images to containerd: openArchive, then what
// client.Import runs in the kedge process (archive.ImportIndex into a
// content store under the data dir, decoding the index, walking manifests
// and configs for the platform) and the image names (fullReference). It
// never panics; every error names the file; reading allocates at most
// twice the largest zstd window allowed; nothing is written outside the
// data dir.
func FuzzReadArchive(f *testing.F) {
	for _, s := range archiveSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		top := t.TempDir()
		dataDir := filepath.Join(top, "data")
		sentinel := writeSentinel(t, top)
		images := filepath.Join(dataDir, "agent", "images")
		if err := os.MkdirAll(images, 0o755); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(images, "fuzz.tar")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		err := readArchive(t, filepath.Join(dataDir, "agent", "containerd", "content"), path)
		runtime.ReadMemStats(&after)
		alloc := after.TotalAlloc - before.TotalAlloc
		t.Logf("%d bytes: allocated %d MiB: %v", len(data), alloc>>20, err)
		if alloc > 2*maxZstdWindow+32<<20 {
			t.Errorf("reading %d bytes allocated %d MiB", len(data), alloc>>20)
		}
		if err != nil {
			if !strings.HasPrefix(err.Error(), "import "+path+": ") {
				t.Errorf("error %q does not name the file", err)
			}
		}
		checkOutside(t, top, sentinel)
	})
}

// readArchive reads the tarball at path into a content store at store.
func readArchive(t *testing.T, store, path string) error {
	cs, err := local.NewStore(store)
	if err != nil {
		t.Fatal(err)
	}
	r, err := openArchive(path)
	if err != nil {
		return err
	}
	defer r.Close()
	ctx := context.Background()
	index, err := archive.ImportIndex(ctx, cs, r)
	if err != nil {
		return archiveError(path, err)
	}
	var idx ocispec.Index
	raw, err := content.ReadBlob(ctx, cs, index)
	if err == nil {
		err = json.Unmarshal(raw, &idx)
	}
	if err != nil {
		return archiveError(path, err)
	}
	for _, m := range idx.Manifests {
		_ = fullReference(m.Annotations[ocispec.AnnotationRefName])
	}
	walk := images.FilterPlatforms(images.ChildrenHandler(cs), platforms.Default())
	if err := images.Walk(ctx, images.Handlers(walk), index); err != nil {
		return archiveError(path, err)
	}
	return nil
}

// writeSentinel writes top/outside/sentinel, which hostile archives aim at,
// and returns its content.
func writeSentinel(t *testing.T, top string) []byte {
	t.Helper()
	content := []byte("sentinel")
	if err := os.MkdirAll(filepath.Join(top, "outside"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(top, "outside", "sentinel"), content, 0o644); err != nil {
		t.Fatal(err)
	}
	return content
}

// checkOutside fails if anything changed outside top/data: top holds only
// data and outside, outside only the unchanged sentinel, and no file an
// archive aims at by an absolute path exists.
func checkOutside(t *testing.T, top string, sentinel []byte) {
	t.Helper()
	for dir, want := range map[string]string{top: "data outside", filepath.Join(top, "outside"): "sentinel"} {
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		if got := strings.Join(names, " "); got != want {
			t.Errorf("%s holds %q, want %q", dir, got, want)
		}
	}
	if got, err := os.ReadFile(filepath.Join(top, "outside", "sentinel")); err != nil || !bytes.Equal(got, sentinel) {
		t.Errorf("the sentinel outside the data dir changed: %q, %v", got, err)
	}
	for _, p := range []string{"/abs-escaped", "/tmp/kedge-fuzz-through-root", "/tmp/kedge-fuzz-escaped"} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s was written outside the data dir", p)
		}
	}
}

// A 10-byte zstd file announcing a 512 MiB window used to make kedge
// allocate 1 GiB (found by FuzzReadArchive); the errors of a tarball that
// is not one now say what the file should be.
func TestOpenArchiveErrors(t *testing.T) {
	oci, _ := testArchives(t, file("hello", "world"))
	gz, zst := compressed(t, oci)
	for _, tc := range []struct {
		name string
		data []byte
		want string // "": read without an error
	}{
		{"plain", oci, ""},
		{"gzip", gz, ""},
		{"zstd", zst, ""},
		{"zstd window of 512 MiB", zstdWindow(29), "zstd window is over the 128 MiB"},
		{"bad zstd block", []byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x00, 0xff, 0xff, 0xff}, "bad zstd data"},
		{"truncated gzip", gz[:len(gz)/2], "ends early"},
		{"bad gzip header", []byte{0x1f, 0x8b, 0x08, 0xff, 0, 0, 0, 0, 0, 0}, "bad gzip data"},
		{"text", bytes.Repeat([]byte("not a tarball\n"), 100), "not a tar archive"},
		{"empty", nil, "neither manifest.json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			top := t.TempDir()
			path := filepath.Join(top, "x.tar")
			if err := os.WriteFile(path, tc.data, 0o644); err != nil {
				t.Fatal(err)
			}
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			err := readArchive(t, filepath.Join(top, "content"), path)
			runtime.ReadMemStats(&after)
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 64<<20 {
				t.Errorf("allocated %d MiB", alloc>>20)
			}
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
				t.Fatalf("error %v, want one naming %s with %q", err, path, tc.want)
			}
		})
	}
}
