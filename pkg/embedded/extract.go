package embedded

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ErrNotBuilt is returned by Extract when the kedge binary carries no
// helper binaries: it was built with plain `go build` instead of
// `make build`.
var ErrNotBuilt = errors.New(`kedge was built without its helper binaries (runc, CNI plugins, pause image): build it with "make build"`)

// Assets says where Extract put the embedded helpers. All paths are
// absolute when the dataDir given to Extract is.
type Assets struct {
	// Dir is <dataDir>/data/<Hash>, the root of this build's assets.
	Dir string
	// Hash names Dir: the first 16 hex digits of the SHA-256 of the
	// extracted files' names, modes and contents.
	Hash string
	// BinDir is Dir/bin, with mode 0755 executables: runc,
	// containerd-shim-runc-v2 (containerd's standalone runc shim) and the
	// CNI plugins (bridge, host-local, loopback, portmap). It is both the
	// CNI plugin directory and the directory to put first on containerd's
	// PATH, where containerd finds the shim.
	BinDir string
	// Runc is BinDir/runc.
	Runc string
	// PauseImageTar is Dir/images/pause.tar (0644), a docker-archive
	// tarball holding the image PauseImage.
	PauseImageTar string
	// PauseImage is the image name and tag inside PauseImageTar
	// (the constant PauseImage).
	PauseImage string
}

// Names of the asset files, relative to the asset root.
const (
	binDir        = "bin"
	imagesDir     = "images"
	pauseTarAsset = "images/pause.tar"
	// shimAsset is the executable containerd runs for the
	// io.containerd.runc.v2 runtime, found on PATH.
	shimAsset = "bin/containerd-shim-runc-v2"
)

// required lists the assets every build must carry.
func required() []string {
	return []string{"bin/runc", shimAsset, "bin/bridge", "bin/host-local", "bin/loopback", "bin/portmap", "bin/crictl", pauseTarAsset}
}

// assetFile is one file to extract.
type assetFile struct {
	name string // slash-separated, relative to the asset root
	mode fs.FileMode
	size int64
}

// staleAfter is how old a leftover temporary directory of an interrupted
// extraction must be before ExtractFS removes it; younger ones may belong
// to a concurrent extraction.
const staleAfter = time.Hour

// ExtractFS is Extract for any asset tree: it extracts the regular files
// under bin/ (as 0755) and images/ (as 0644) of fsys into
// <dataDir>/data/<hash>/. Other files of fsys (build stamps, .gitkeep) are
// ignored.
//
// The directory is written under a temporary name and renamed into place,
// so it is either complete or absent. When it already exists, ExtractFS
// only checks that every file has the expected type, mode and size, and
// extracts it afresh if not. Directories of older builds are kept: a shim
// started by an older kedge may still run its runc; deleting them is left
// to the operator.
func ExtractFS(fsys fs.FS, dataDir string) (Assets, error) {
	if dataDir == "" {
		return Assets{}, errors.New("embedded: empty data dir")
	}
	files, err := listAssets(fsys)
	if err != nil {
		return Assets{}, err
	}
	hash, err := contentHash(fsys, files)
	if err != nil {
		return Assets{}, err
	}
	root := filepath.Join(dataDir, "data")
	dir := filepath.Join(root, hash)
	a := Assets{
		Dir:           dir,
		Hash:          hash,
		BinDir:        filepath.Join(dir, binDir),
		Runc:          filepath.Join(dir, binDir, "runc"),
		PauseImageTar: filepath.Join(dir, filepath.FromSlash(pauseTarAsset)),
		PauseImage:    PauseImage,
	}
	if verify(dir, files) != nil {
		if err := install(fsys, files, root, dir); err != nil {
			return Assets{}, err
		}
	}
	removeStale(root)
	return a, nil
}

// listAssets returns the files to extract, sorted by name, or ErrNotBuilt
// when fsys holds none of them.
func listAssets(fsys fs.FS) ([]assetFile, error) {
	var files []assetFile
	for _, top := range []string{binDir, imagesDir} {
		mode := fs.FileMode(0o644)
		if top == binDir {
			mode = 0o755
		}
		err := fs.WalkDir(fsys, top, func(name string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.Type().IsRegular() {
				return nil
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			files = append(files, assetFile{name: name, mode: mode, size: info.Size()})
			return nil
		})
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("embedded: list %s: %w", top, err)
		}
	}
	if len(files) == 0 {
		return nil, ErrNotBuilt
	}
	slices.SortFunc(files, func(a, b assetFile) int { return strings.Compare(a.name, b.name) })
	var missing []string
	for _, r := range required() {
		if !slices.ContainsFunc(files, func(f assetFile) bool { return f.name == r }) {
			missing = append(missing, r)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("embedded: kedge was built with incomplete helper assets, missing %s: rebuild it with \"make build\"", strings.Join(missing, ", "))
	}
	return files, nil
}

// contentHash hashes the names, modes and contents of files.
func contentHash(fsys fs.FS, files []assetFile) (string, error) {
	h := sha256.New()
	for _, f := range files {
		fmt.Fprintf(h, "%s\x00%o\x00%d\x00", f.name, f.mode, f.size)
		if err := copyFrom(fsys, f.name, h); err != nil {
			return "", err
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// copyFrom copies the asset name to w.
func copyFrom(fsys fs.FS, name string, w io.Writer) error {
	r, err := fsys.Open(name)
	if err != nil {
		return fmt.Errorf("embedded: read asset %s: %w", name, err)
	}
	defer r.Close()
	if _, err := io.Copy(w, r); err != nil {
		return fmt.Errorf("embedded: read asset %s: %w", name, err)
	}
	return nil
}

// verify checks that dir holds files with their modes and sizes.
func verify(dir string, files []assetFile) error {
	for _, f := range files {
		p := filepath.Join(dir, filepath.FromSlash(f.name))
		info, err := os.Lstat(p)
		if err != nil {
			return err
		}
		if !info.Mode().IsRegular() || info.Mode().Perm() != f.mode || info.Size() != f.size {
			return fmt.Errorf("embedded: %s: mode %v size %d, want %v size %d", p, info.Mode(), info.Size(), f.mode, f.size)
		}
	}
	return nil
}

// install writes files into a temporary directory of root and renames it
// to dir, replacing an existing dir that failed verification.
func install(fsys fs.FS, files []assetFile, root, dir string) error {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return fmt.Errorf("embedded: %w", err)
	}
	hash := filepath.Base(dir)
	tmp, err := os.MkdirTemp(root, ".tmp-"+hash+"-")
	if err != nil {
		return fmt.Errorf("embedded: %w", err)
	}
	defer os.RemoveAll(tmp) // a no-op once renamed
	if err := os.Chmod(tmp, 0o755); err != nil {
		return fmt.Errorf("embedded: %w", err)
	}
	for _, f := range files {
		if err := writeFile(fsys, f, tmp); err != nil {
			return err
		}
	}
	if _, err := os.Lstat(dir); err == nil {
		// A damaged extraction: move it aside so the rename can succeed.
		old := filepath.Join(root, ".old-"+hash+"-"+strconv.Itoa(os.Getpid()))
		if err := os.Rename(dir, old); err != nil {
			return fmt.Errorf("embedded: replace damaged %s: %w", dir, err)
		}
		defer os.RemoveAll(old)
	}
	if err := os.Rename(tmp, dir); err != nil {
		// Another kedge process may have finished the same extraction first.
		if verify(dir, files) == nil {
			return nil
		}
		return fmt.Errorf("embedded: %w", err)
	}
	return syncDir(root)
}

// writeFile writes the asset f under dir with its mode, and syncs it.
func writeFile(fsys fs.FS, f assetFile, dir string) error {
	p := filepath.Join(dir, filepath.FromSlash(f.name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("embedded: %w", err)
	}
	out, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, f.mode)
	if err != nil {
		return fmt.Errorf("embedded: %w", err)
	}
	err = copyFrom(fsys, f.name, out)
	if err == nil {
		err = out.Chmod(f.mode) // the umask may have narrowed it
	}
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("embedded: write %s: %w", p, err)
	}
	return nil
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("embedded: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("embedded: sync %s: %w", dir, err)
	}
	return nil
}

// removeStale deletes what interrupted extractions left in root, best
// effort: temporary directories older than staleAfter.
func removeStale(root string) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), ".tmp-") && !strings.HasPrefix(e.Name(), ".old-") {
			continue
		}
		if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > staleAfter {
			_ = os.RemoveAll(filepath.Join(root, e.Name()))
		}
	}
}
