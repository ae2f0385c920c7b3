package containerd

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"runtime"
	"testing"

	"github.com/klauspost/compress/zstd"
	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Hand-made image tarballs for the fuzz targets' seeds (the helpers of
// testimage_test.go want a *testing.T, and seeds are made with a *testing.F).

// entry is one member of a hand-made tarball.
type entry struct {
	hdr  tar.Header
	data string
}

// tarOf writes entries as a tar stream; a regular file's size is its data's.
func tarOf(tb testing.TB, entries ...entry) []byte {
	tb.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.hdr
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.data))
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if err := tw.WriteHeader(&h); err != nil {
			tb.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.data)); err != nil {
			tb.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// file is a regular file entry.
func file(name, data string) entry { return entry{tar.Header{Name: name}, data} }

// link is a symlink or hard link entry.
func link(typ byte, name, target string) entry {
	return entry{tar.Header{Name: name, Linkname: target, Typeflag: typ, Mode: 0o777}, ""}
}

// mustJSON marshals v.
func mustJSON(tb testing.TB, v any) string {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

// testArchives returns a small image as an OCI layout and as a `docker
// save` tarball, its layer holding the files given.
func testArchives(tb testing.TB, layerFiles ...entry) (oci, docker []byte) {
	tb.Helper()
	layer := string(tarOf(tb, layerFiles...))
	layerD := digest.FromString(layer)
	config := mustJSON(tb, ocispec.Image{
		Platform: ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH},
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{layerD}},
	})
	configD := digest.FromString(config)
	manifest := mustJSON(tb, ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: configD, Size: int64(len(config))},
		Layers:    []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageLayer, Digest: layerD, Size: int64(len(layer))}},
	})
	manifestD := digest.FromString(manifest)
	index := mustJSON(tb, ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{{
			MediaType: ocispec.MediaTypeImageManifest, Digest: manifestD, Size: int64(len(manifest)),
			Annotations: map[string]string{ocispec.AnnotationRefName: "kedge.local/fuzz:1.0"},
		}},
	})
	blob := func(d digest.Digest) string { return "blobs/sha256/" + d.Encoded() }
	oci = tarOf(tb, file("oci-layout", `{"imageLayoutVersion":"1.0.0"}`), file("index.json", index),
		file(blob(manifestD), manifest), file(blob(configD), config), file(blob(layerD), layer))
	docker = tarOf(tb, file("manifest.json", mustJSON(tb, []map[string]any{{
		"Config": configD.Encoded() + ".json", "RepoTags": []string{"kedge.local/fuzz:1.0"}, "Layers": []string{"l/layer.tar"},
	}})), file(configD.Encoded()+".json", config), file("l/layer.tar", layer))
	return oci, docker
}

// compressed returns data gzip and zstd compressed.
func compressed(tb testing.TB, data []byte) (gz, zst []byte) {
	tb.Helper()
	var g bytes.Buffer
	w := gzip.NewWriter(&g)
	_, _ = w.Write(data)
	if err := w.Close(); err != nil {
		tb.Fatal(err)
	}
	var z bytes.Buffer
	zw, err := zstd.NewWriter(&z)
	if err != nil {
		tb.Fatal(err)
	}
	_, _ = zw.Write(data)
	if err := zw.Close(); err != nil {
		tb.Fatal(err)
	}
	return g.Bytes(), z.Bytes()
}

// headerOnly is a tar stream cut after the header of h: what a file of
// h.Size bytes looks like when its data is missing.
func headerOnly(tb testing.TB, h tar.Header) []byte {
	tb.Helper()
	var buf bytes.Buffer
	if err := tar.NewWriter(&buf).WriteHeader(&h); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}
