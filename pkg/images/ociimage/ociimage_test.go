package ociimage

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"runtime"
	"slices"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// entry is one file or directory read back from a layer.
type entry struct {
	typ      byte
	mode     int64
	uid, gid int
	data     string
}

// readBack loads the tarball in buf with the tag and returns its config
// and the entries of its only layer.
func readBack(t *testing.T, buf []byte, tag string) (*v1.ConfigFile, map[string]entry) {
	t.Helper()
	ref, err := name.NewTag(tag)
	if err != nil {
		t.Fatal(err)
	}
	img, err := tarball.Image(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(buf)), nil
	}, &ref)
	if err != nil {
		t.Fatalf("tarball.Image(%s): %v", tag, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 1 {
		t.Fatalf("layers = %d, want 1", len(layers))
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	entries := map[string]entry{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		entries[h.Name] = entry{typ: h.Typeflag, mode: h.Mode, uid: h.Uid, gid: h.Gid, data: string(data)}
	}
	return cf, entries
}

func TestBuildRoundTrip(t *testing.T) {
	bin := []byte("\x7fELF not really a binary")
	var buf bytes.Buffer
	if err := Build(bin, "/pause", "kedge.local/pause:1.0", &buf); err != nil {
		t.Fatal(err)
	}
	cf, entries := readBack(t, buf.Bytes(), "kedge.local/pause:1.0")
	if !slices.Equal(cf.Config.Entrypoint, []string{"/pause"}) {
		t.Errorf("entrypoint = %q, want [/pause]", cf.Config.Entrypoint)
	}
	if cf.OS != "linux" || cf.Architecture != runtime.GOARCH {
		t.Errorf("platform = %s/%s, want linux/%s", cf.OS, cf.Architecture, runtime.GOARCH)
	}
	want := map[string]entry{"pause": {typ: tar.TypeReg, mode: 0o755, data: string(bin)}}
	if len(entries) != 1 || entries["pause"] != want["pause"] {
		t.Errorf("layer = %+v, want %+v", entries, want)
	}
}

func TestWriteNestedPathArchEnv(t *testing.T) {
	var buf bytes.Buffer
	s := Spec{Binary: []byte("srv"), Path: "/usr/bin/server", Arch: "arm64", Env: []string{"PORT=8080"}}
	if err := Write(s, "kedge.local/test/server:v1", &buf); err != nil {
		t.Fatal(err)
	}
	cf, entries := readBack(t, buf.Bytes(), "kedge.local/test/server:v1")
	if cf.Architecture != "arm64" || !slices.Equal(cf.Config.Env, []string{"PORT=8080"}) {
		t.Errorf("config arch %q env %q", cf.Architecture, cf.Config.Env)
	}
	for _, d := range []string{"usr/", "usr/bin/"} {
		if e := entries[d]; e.typ != tar.TypeDir || e.mode != 0o755 {
			t.Errorf("dir %s = %+v, want a 0755 directory", d, e)
		}
	}
	if e := entries["usr/bin/server"]; e.typ != tar.TypeReg || e.mode != 0o755 || e.data != "srv" {
		t.Errorf("file = %+v", e)
	}
}

func TestImageReproducible(t *testing.T) {
	digest := func() v1.Hash {
		img, err := Image(Spec{Binary: []byte("x"), Path: "/x"})
		if err != nil {
			t.Fatal(err)
		}
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	if a, b := digest(), digest(); a != b {
		t.Errorf("digests differ: %s, %s", a, b)
	}
}

func TestBuildErrors(t *testing.T) {
	for _, tc := range []struct {
		name, path, tag string
		bin             []byte
	}{
		{"empty binary", "/pause", "kedge.local/pause:1.0", nil},
		{"relative path", "pause", "kedge.local/pause:1.0", []byte("x")},
		{"root path", "/", "kedge.local/pause:1.0", []byte("x")},
		{"unclean path", "/a/../pause", "kedge.local/pause:1.0", []byte("x")},
		{"bad tag", "/pause", "Not A Tag", []byte("x")},
	} {
		if err := Build(tc.bin, tc.path, tc.tag, io.Discard); err == nil {
			t.Errorf("%s: Build succeeded, want an error", tc.name)
		}
	}
}
