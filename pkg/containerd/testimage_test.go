package containerd

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/klauspost/compress/zstd"
	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// buildSleeper compiles testdata/sleeper, a static program that waits for
// SIGTERM, the one program of the test images.
func buildSleeper(t *testing.T) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "sleeper")
	cmd := exec.Command("go", "build", "-o", out, "./testdata/sleeper")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build sleeper: %v\n%s", err, b)
	}
	bin, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// tarFiles writes name → content as a tar stream (mode 0755 for files
// ending in "sleeper", 0644 otherwise).
func tarFiles(t *testing.T, files []tarFile) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		mode := int64(0o644)
		if filepath.Base(f.name) == "sleeper" {
			mode = 0o755
		}
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: mode, Size: int64(len(f.data)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(f.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

type tarFile struct {
	name string
	data []byte
}

// imageParts are the blobs of a one-layer image running /sleeper.
type imageParts struct {
	layer, config, manifest []byte
	layerD, configD         digest.Digest
}

func sleeperImage(t *testing.T, sleeper []byte) imageParts {
	t.Helper()
	layer := tarFiles(t, []tarFile{{"sleeper", sleeper}})
	layerD := digest.FromBytes(layer)
	config, err := json.Marshal(ocispec.Image{
		Platform: ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH},
		Config:   ocispec.ImageConfig{Entrypoint: []string{"/sleeper"}},
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{layerD}},
	})
	if err != nil {
		t.Fatal(err)
	}
	configD := digest.FromBytes(config)
	manifest, err := json.Marshal(ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: configD, Size: int64(len(config))},
		Layers:    []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageLayer, Digest: layerD, Size: int64(len(layer))}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return imageParts{layer: layer, config: config, manifest: manifest, layerD: layerD, configD: configD}
}

// ociArchive is an OCI image layout tarball naming the image refName (an
// org.opencontainers.image.ref.name annotation).
func ociArchive(t *testing.T, img imageParts, refName string) []byte {
	t.Helper()
	manifestD := digest.FromBytes(img.manifest)
	index, err := json.Marshal(ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{{
			MediaType:   ocispec.MediaTypeImageManifest,
			Digest:      manifestD,
			Size:        int64(len(img.manifest)),
			Annotations: map[string]string{ocispec.AnnotationRefName: refName},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	blob := func(d digest.Digest) string { return "blobs/sha256/" + d.Encoded() }
	return tarFiles(t, []tarFile{
		{"oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		{"index.json", index},
		{blob(manifestD), img.manifest},
		{blob(img.configD), img.config},
		{blob(img.layerD), img.layer},
	})
}

// dockerArchive is a `docker save` tarball tagged repoTag.
func dockerArchive(t *testing.T, img imageParts, repoTag string) []byte {
	t.Helper()
	configName := img.configD.Encoded() + ".json"
	layerName := img.layerD.Encoded() + "/layer.tar"
	manifest, err := json.Marshal([]map[string]any{{
		"Config": configName, "RepoTags": []string{repoTag}, "Layers": []string{layerName},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return tarFiles(t, []tarFile{
		{"manifest.json", manifest},
		{configName, img.config},
		{layerName, img.layer},
	})
}

func zstdCompress(t *testing.T, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := zstd.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func mustf(t *testing.T, err error, format string, args ...any) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", fmt.Sprintf(format, args...), err)
	}
}
