package embedded

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
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
	// manifestFile and archiveFile are the packed form of the assets that
	// scripts/build-helpers.sh writes into packed/ and kedge embeds: the
	// list of files (see readManifest) and one zstd-compressed tar of them.
	// One archive compresses better than the files one by one: the Go
	// helpers share much code, and zstd's long window finds it.
	manifestFile = "manifest"
	archiveFile  = "assets.tar.zst"
)

// required lists the assets every build must carry.
func required() []string {
	return []string{"bin/runc", shimAsset, "bin/bridge", "bin/host-local", "bin/loopback", "bin/portmap", pauseTarAsset}
}

// assetFile is one file to extract, as the manifest lists it.
type assetFile struct {
	name   string // slash-separated, relative to the asset root
	mode   fs.FileMode
	size   int64
	sha256 string // hex
}

// staleAfter is how old a leftover temporary directory of an interrupted
// extraction must be before ExtractFS removes it; younger ones may belong
// to a concurrent extraction.
const staleAfter = time.Hour

// ExtractFS is Extract for any packed asset tree: fsys holds manifestFile and
// archiveFile (what scripts/build-helpers.sh writes into packed/), and
// ExtractFS unpacks the files the manifest lists into
// <dataDir>/data/<hash>/, where hash names the manifest's content. Other
// files of fsys (build stamps, .gitkeep) are ignored.
//
// The directory is written under a temporary name and renamed into place,
// so it is either complete or absent; every file is checked against the
// manifest's size and SHA-256 as it is written. When the directory already
// exists, ExtractFS only checks that every file has the expected type,
// mode and size (the archive is not even read), and extracts it afresh if
// not. Directories of older builds are kept: a shim started by an older
// kedge may still run its runc; deleting them is left to the operator.
func ExtractFS(fsys fs.FS, dataDir string) (Assets, error) {
	a, files, err := locateFS(fsys, dataDir)
	if err != nil {
		return Assets{}, err
	}
	root, dir := filepath.Dir(a.Dir), a.Dir
	if verify(dir, files) != nil {
		if err := install(fsys, files, root, dir); err != nil {
			return Assets{}, err
		}
	}
	removeStale(root)
	return a, nil
}

// LocateFS returns where ExtractFS puts fsys's assets under dataDir,
// without extracting them: a start can lay out its components while the
// extraction runs.
func LocateFS(fsys fs.FS, dataDir string) (Assets, error) {
	a, _, err := locateFS(fsys, dataDir)
	return a, err
}

func locateFS(fsys fs.FS, dataDir string) (Assets, []assetFile, error) {
	if dataDir == "" {
		return Assets{}, nil, errors.New("embedded: empty data dir")
	}
	files, hash, err := readManifest(fsys)
	if err != nil {
		return Assets{}, nil, err
	}
	dir := filepath.Join(dataDir, "data", hash)
	return Assets{
		Dir:           dir,
		Hash:          hash,
		BinDir:        filepath.Join(dir, binDir),
		Runc:          filepath.Join(dir, binDir, "runc"),
		PauseImageTar: filepath.Join(dir, filepath.FromSlash(pauseTarAsset)),
		PauseImage:    PauseImage,
	}, files, nil
}

// readManifest parses fsys's manifestFile: one line per file, sorted by name,
//
//	<sha256 hex> <mode, octal> <size> <name>
//
// It returns the files, the first 16 hex digits of the manifest's SHA-256,
// or ErrNotBuilt when fsys has no manifest.
func readManifest(fsys fs.FS) ([]assetFile, string, error) {
	data, err := fs.ReadFile(fsys, manifestFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, "", ErrNotBuilt
	}
	if err != nil {
		return nil, "", fmt.Errorf("embedded: %w", err)
	}
	var files []assetFile
	for i, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		f, err := parseManifestLine(line)
		if err != nil {
			return nil, "", fmt.Errorf("embedded: %s line %d: %w", manifestFile, i+1, err)
		}
		if n := len(files); n > 0 && files[n-1].name >= f.name {
			return nil, "", fmt.Errorf("embedded: %s line %d: %s not sorted after %s", manifestFile, i+1, f.name, files[n-1].name)
		}
		files = append(files, f)
	}
	var missing []string
	for _, r := range required() {
		if !slices.ContainsFunc(files, func(f assetFile) bool { return f.name == r }) {
			missing = append(missing, r)
		}
	}
	if len(missing) > 0 {
		return nil, "", fmt.Errorf("embedded: kedge was built with incomplete helper assets, missing %s: rebuild it with \"make build\"", strings.Join(missing, ", "))
	}
	sum := sha256.Sum256(data)
	return files, hex.EncodeToString(sum[:])[:16], nil
}

// parseManifestLine parses one manifest line (see readManifest).
func parseManifestLine(line string) (assetFile, error) {
	fields := strings.Fields(line)
	if len(fields) != 4 {
		return assetFile{}, fmt.Errorf("%q: want <sha256> <mode> <size> <name>", line)
	}
	sum, modeStr, sizeStr, name := fields[0], fields[1], fields[2], fields[3]
	if b, err := hex.DecodeString(sum); err != nil || len(b) != sha256.Size {
		return assetFile{}, fmt.Errorf("%q: bad sha256", line)
	}
	mode, err := strconv.ParseUint(modeStr, 8, 32)
	if err != nil || (mode != 0o755 && mode != 0o644) {
		return assetFile{}, fmt.Errorf("%q: mode must be 0755 or 0644", line)
	}
	size, err := strconv.ParseInt(sizeStr, 10, 64)
	if err != nil || size < 0 {
		return assetFile{}, fmt.Errorf("%q: bad size", line)
	}
	top, _, _ := strings.Cut(name, "/")
	if !fs.ValidPath(name) || (top != binDir && top != imagesDir) || !strings.Contains(name, "/") {
		return assetFile{}, fmt.Errorf("%q: name must be under %s/ or %s/", line, binDir, imagesDir)
	}
	return assetFile{name: name, mode: fs.FileMode(mode), size: size, sha256: sum}, nil
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
	if err := unpack(fsys, files, tmp); err != nil {
		return err
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

// maxWindow bounds the zstd window the decoder accepts, and so the memory
// an extraction takes: build-helpers.sh compresses with --long=26 (64 MiB,
// more than all the assets together, so it finds the code the Go helpers
// share across files).
const maxWindow = 1 << 26

// unpack decompresses fsys's archiveFile into dir, writing the files listed in
// files and checking each one's size and SHA-256.
func unpack(fsys fs.FS, files []assetFile, dir string) error {
	r, err := fsys.Open(archiveFile)
	if err != nil {
		return fmt.Errorf("embedded: %w", err)
	}
	defer r.Close()
	zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxWindow(maxWindow))
	if err != nil {
		return fmt.Errorf("embedded: %s: %w", archiveFile, err)
	}
	defer zr.Close()
	// The window is garbage once unpacked; give it back to the OS now
	// rather than carry it in the RSS of the long-running kedge process.
	defer debug.FreeOSMemory()
	want := make(map[string]assetFile, len(files))
	for _, f := range files {
		want[f.name] = f
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("embedded: %s: %w", archiveFile, err)
		}
		if h.Typeflag == tar.TypeDir {
			continue
		}
		f, ok := want[h.Name]
		if !ok || h.Typeflag != tar.TypeReg || h.Size != f.size {
			return fmt.Errorf("embedded: %s: entry %s (type %c, %d bytes) is not in %s as such", archiveFile, h.Name, h.Typeflag, h.Size, manifestFile)
		}
		if err := writeFile(tr, f, dir); err != nil {
			return err
		}
		delete(want, h.Name)
	}
	if len(want) > 0 {
		return fmt.Errorf("embedded: %s lacks %d file(s) of %s, e.g. %s", archiveFile, len(want), manifestFile, slices.Sorted(maps.Keys(want))[0])
	}
	return nil
}

// writeFile writes the asset f, read from r, under dir with its mode,
// checks its SHA-256 and syncs it.
func writeFile(r io.Reader, f assetFile, dir string) error {
	p := filepath.Join(dir, filepath.FromSlash(f.name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("embedded: %w", err)
	}
	out, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, f.mode)
	if err != nil {
		return fmt.Errorf("embedded: %w", err)
	}
	h := sha256.New()
	_, err = io.Copy(io.MultiWriter(out, h), r)
	if err == nil && hex.EncodeToString(h.Sum(nil)) != f.sha256 {
		err = fmt.Errorf("SHA-256 differs from %s", manifestFile)
	}
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
