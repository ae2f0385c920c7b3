package containerd

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/archive/compression"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	"github.com/distribution/reference"
	"github.com/klauspost/compress/zstd"
)

// PinnedLabel and PinnedValue mark an image the CRI plugin reports as
// pinned, which the kubelet's image garbage collection never removes.
const (
	PinnedLabel = "io.cri-containerd.pinned"
	PinnedValue = "pinned"
)

// ImportFile imports the images of one tarball — a docker-archive
// (`docker save`) or an OCI image layout, plain, gzip or zstd compressed —
// into the k8s.io namespace of the containerd at address, unpacks them for
// the snapshotter containerd uses, and returns their names. Images the
// archive names only by a tag (an OCI ref.name such as "1.0") are kept
// unnamed; an archive without any named image is an error.
func ImportFile(ctx context.Context, address, path string) ([]string, error) {
	r, err := openArchive(path)
	if err != nil {
		return nil, err
	}
	defer r.Close()

	cl, err := client.New(address, client.WithDefaultNamespace(Namespace))
	if err != nil {
		return nil, fmt.Errorf("import %s: containerd at %s: %w", path, address, err)
	}
	defer cl.Close()
	ctx = namespaces.WithNamespace(ctx, Namespace)
	snapshotter, err := snapshotterOf(ctx, cl)
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", path, err)
	}
	// The lease keeps the imported content from the garbage collector until
	// the images are unpacked.
	ctx, done, err := cl.WithLease(ctx)
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", path, err)
	}
	defer done(context.WithoutCancel(ctx))

	platform := platforms.Default()
	imgs, err := cl.Import(ctx, r,
		client.WithImportPlatform(platform),
		client.WithImageRefTranslator(fullReference),
	)
	if err != nil {
		return nil, archiveError(path, err)
	}
	var names []string
	for _, img := range imgs {
		if err := client.NewImageWithPlatform(cl, img, platform).Unpack(ctx, snapshotter); err != nil {
			return nil, fmt.Errorf("import %s: unpack %s: %w", path, img.Name, err)
		}
		names = append(names, img.Name)
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("import %s: no named image for %s in the archive", path, platforms.Format(platforms.DefaultSpec()))
	}
	return names, nil
}

// fullReference keeps an OCI ref.name annotation only when it is a whole
// image reference ("registry/repo:tag"), in its normalized form; a bare tag
// names nothing.
func fullReference(name string) string {
	if !strings.ContainsAny(name, "/:@") {
		return ""
	}
	ref, err := reference.ParseDockerRef(name)
	if err != nil {
		return ""
	}
	return ref.String()
}

// snapshotterOf returns the snapshotter the CRI plugin unpacks into:
// overlayfs when containerd loaded it, native otherwise (see Render).
func snapshotterOf(ctx context.Context, cl *client.Client) (string, error) {
	resp, err := cl.IntrospectionService().Plugins(ctx)
	if err != nil {
		return "", fmt.Errorf("list containerd's plugins: %w", err)
	}
	for _, p := range resp.Plugins {
		if p.Type == "io.containerd.snapshotter.v1" && p.ID == SnapshotterOverlay && p.InitErr == nil {
			return SnapshotterOverlay, nil
		}
	}
	return SnapshotterNative, nil
}

// Pin labels the image ref in the k8s.io namespace of the containerd at
// address as pinned (PinnedLabel), so that the kubelet never garbage
// collects it. The image must exist.
func Pin(ctx context.Context, address, ref string) error {
	cl, err := client.New(address, client.WithDefaultNamespace(Namespace))
	if err != nil {
		return fmt.Errorf("pin %s: containerd at %s: %w", ref, address, err)
	}
	defer cl.Close()
	ctx = namespaces.WithNamespace(ctx, Namespace)
	is := cl.ImageService()
	img, err := is.Get(ctx, ref)
	if err != nil {
		return fmt.Errorf("pin %s: %w", ref, err)
	}
	if img.Labels[PinnedLabel] == PinnedValue {
		return nil
	}
	if img.Labels == nil {
		img.Labels = map[string]string{}
	}
	img.Labels[PinnedLabel] = PinnedValue
	if _, err := is.Update(ctx, img, "labels."+PinnedLabel); err != nil {
		return fmt.Errorf("pin %s: %w", ref, err)
	}
	return nil
}

// hasImages reports whether the containerd at address has all the named
// images in the k8s.io namespace.
func hasImages(ctx context.Context, address string, names []string) (bool, error) {
	cl, err := client.New(address, client.WithDefaultNamespace(Namespace))
	if err != nil {
		return false, fmt.Errorf("containerd at %s: %w", address, err)
	}
	defer cl.Close()
	ctx = namespaces.WithNamespace(ctx, Namespace)
	for _, n := range names {
		if _, err := cl.ImageService().Get(ctx, n); errdefs.IsNotFound(err) {
			return false, nil
		} else if err != nil {
			return false, fmt.Errorf("image %s: %w", n, err)
		}
	}
	return true, nil
}

// maxZstdWindow bounds the window of a zstd compressed tarball, which the
// decoder allocates (twice) before it reads a byte of data: 128 MiB, the
// zstd tool's own default limit. Without it a 10-byte file announcing a
// 512 MiB window made kedge allocate 1 GiB.
const maxZstdWindow = 128 << 20

// archiveStream is the tar stream of an image tarball; Close closes the
// decompressor and the file.
type archiveStream struct {
	io.Reader
	close func()
	file  *os.File
}

func (a archiveStream) Close() error {
	a.close()
	return a.file.Close()
}

// decompressError is an error of the gzip or zstd data of a tarball.
type decompressError struct {
	format string
	err    error
}

func (e *decompressError) Error() string { return "bad " + e.format + " data: " + e.err.Error() }
func (e *decompressError) Unwrap() error { return e.err }

// decompressReader labels the errors of a decompressor with its format.
type decompressReader struct {
	io.Reader
	format string
}

func (r decompressReader) Read(p []byte) (int, error) {
	n, err := r.Reader.Read(p)
	if err != nil && err != io.EOF {
		err = &decompressError{r.format, err}
	}
	return n, err
}

// openArchive opens the image tarball at path and returns its tar stream,
// decompressed when the file is gzip or zstd (known by its first bytes,
// whatever its name).
func openArchive(path string) (io.ReadCloser, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", path, err)
	}
	br := bufio.NewReader(f)
	magic, _ := br.Peek(10)
	var (
		r       io.Reader = br
		closeFn           = func() {}
	)
	switch format := compression.DetectCompression(magic); format {
	case compression.Gzip:
		zr, err := gzip.NewReader(br)
		if err != nil {
			_ = f.Close()
			return nil, archiveError(path, &decompressError{"gzip", err})
		}
		r, closeFn = decompressReader{zr, "gzip"}, func() { _ = zr.Close() }
	case compression.Zstd:
		zr, err := zstd.NewReader(br, zstd.WithDecoderMaxWindow(maxZstdWindow))
		if err != nil {
			_ = f.Close()
			return nil, archiveError(path, &decompressError{"zstd", err})
		}
		r, closeFn = decompressReader{zr, "zstd"}, zr.Close
	}
	return archiveStream{Reader: r, close: closeFn, file: f}, nil
}

// archiveError is an error reading the image tarball at path, with what the
// file should be when that is what went wrong.
func archiveError(path string, err error) error {
	var hint string
	switch {
	case errors.Is(err, zstd.ErrWindowSizeExceeded):
		hint = fmt.Sprintf("its zstd window is over the %d MiB kedge allows (compressed with zstd --long?): recompress it without --long", maxZstdWindow>>20)
	case errors.Is(err, tar.ErrHeader):
		hint = "not a tar archive: want the output of docker save, or an OCI image layout, as .tar, .tar.gz or .tar.zst"
	case errors.Is(err, io.ErrUnexpectedEOF):
		hint = "the file ends early (truncated, or still being copied?)"
	case err.Error() == "unrecognized image format":
		hint = "a tar archive with neither manifest.json (docker save) nor oci-layout and index.json (an OCI image layout)"
	default:
		return fmt.Errorf("import %s: %w", path, err)
	}
	return fmt.Errorf("import %s: %s: %w", path, hint, err)
}
