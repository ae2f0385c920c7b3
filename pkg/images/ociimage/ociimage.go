package ociimage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"path"
	"runtime"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Spec describes a one-binary image.
type Spec struct {
	// Binary is the content of the executable. Required. It should be
	// statically linked: the image holds nothing else.
	Binary []byte
	// Path is the absolute path of the executable in the image, e.g.
	// "/pause". It becomes the entrypoint. Required.
	Path string
	// Arch is the GOARCH the binary was built for; "" means runtime.GOARCH.
	// The image's OS is always linux.
	Arch string
	// Env is the image's environment ("KEY=value"); optional.
	Env []string
}

// Build writes a docker-archive tarball of a one-layer image holding binary
// at pathInImage (mode 0755, owner 0:0, entrypoint [pathInImage], built for
// runtime.GOARCH) to w, tagged tag (e.g. "kedge.local/pause:1.0").
func Build(binary []byte, pathInImage, tag string, w io.Writer) error {
	return Write(Spec{Binary: binary, Path: pathInImage}, tag, w)
}

// Write writes the docker-archive tarball of the image s describes, tagged
// tag, to w.
func Write(s Spec, tag string, w io.Writer) error {
	ref, err := name.NewTag(tag, name.StrictValidation)
	if err != nil {
		return fmt.Errorf("ociimage: tag %q: %w", tag, err)
	}
	img, err := Image(s)
	if err != nil {
		return err
	}
	if err := tarball.Write(ref, img, w); err != nil {
		return fmt.Errorf("ociimage: write %s: %w", tag, err)
	}
	return nil
}

// Image returns the image s describes, for callers that write it some other
// way. It is reproducible: the same Spec gives the same digest (all
// timestamps are the Unix epoch).
func Image(s Spec) (v1.Image, error) {
	if len(s.Binary) == 0 {
		return nil, fmt.Errorf("ociimage: empty binary for %q", s.Path)
	}
	if !path.IsAbs(s.Path) || path.Clean(s.Path) != s.Path || s.Path == "/" {
		return nil, fmt.Errorf("ociimage: path in image %q: want a clean absolute file path such as /pause", s.Path)
	}
	arch := s.Arch
	if arch == "" {
		arch = runtime.GOARCH
	}
	layerTar, err := layerTar(s.Binary, s.Path)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithCompressionLevel(gzip.BestCompression))
	if err != nil {
		return nil, fmt.Errorf("ociimage: layer: %w", err)
	}
	img, err := mutate.Append(empty.Image, mutate.Addendum{
		Layer: layer,
		History: v1.History{
			CreatedBy: "kedge ociimage: " + s.Path,
			Created:   v1.Time{Time: time.Unix(0, 0).UTC()},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("ociimage: append layer: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("ociimage: config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.Architecture = arch
	cf.OS = "linux"
	cf.Created = v1.Time{Time: time.Unix(0, 0).UTC()}
	cf.Config.Entrypoint = []string{s.Path}
	cf.Config.Env = append([]string(nil), s.Env...)
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("ociimage: set config: %w", err)
	}
	return img, nil
}

// layerTar returns an uncompressed tar holding the parent directories of
// p (0755) and the binary at p (0755), all owned by 0:0.
func layerTar(binary []byte, p string) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	epoch := time.Unix(0, 0).UTC()
	rel := strings.TrimPrefix(p, "/")
	parts := strings.Split(rel, "/")
	for i := 1; i < len(parts); i++ {
		dir := strings.Join(parts[:i], "/") + "/"
		if err := tw.WriteHeader(&tar.Header{
			Typeflag: tar.TypeDir, Name: dir, Mode: 0o755, ModTime: epoch,
		}); err != nil {
			return nil, fmt.Errorf("ociimage: layer dir %s: %w", dir, err)
		}
	}
	if err := tw.WriteHeader(&tar.Header{
		Typeflag: tar.TypeReg, Name: rel, Mode: 0o755, Size: int64(len(binary)), ModTime: epoch,
	}); err != nil {
		return nil, fmt.Errorf("ociimage: layer file %s: %w", rel, err)
	}
	if _, err := tw.Write(binary); err != nil {
		return nil, fmt.Errorf("ociimage: layer file %s: %w", rel, err)
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("ociimage: layer: %w", err)
	}
	return buf.Bytes(), nil
}
