package upgrade

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// Release file names, as `make release` and install.sh name them.
func binaryName() string   { return "kedge-" + runtime.GOARCH }
func checksumName() string { return "sha256sum-" + runtime.GOARCH + ".txt" }

// maxBinary bounds a download (kedge is about 175 MB unpacked).
const maxBinary = 1 << 30

// fetch writes the plan's binary to dst (0755) after checking it against
// the release's sha256sum file and its `--version` against the plan.
func fetch(ctx context.Context, p Plan, dst string) error {
	sums, err := open(ctx, p, checksumName())
	if err != nil {
		return err
	}
	want, err := readChecksum(sums, binaryName())
	sums.Close()
	if err != nil {
		return fmt.Errorf("%s: %w", source(p, checksumName()), err)
	}
	src, err := open(ctx, p, binaryName())
	if err != nil {
		return err
	}
	defer src.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o755)
	if err != nil {
		return err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(src, maxBinary+1))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(dst)
		return fmt.Errorf("%s: %w", source(p, binaryName()), err)
	}
	if n > maxBinary {
		os.Remove(dst)
		return fmt.Errorf("%s: larger than %d bytes", source(p, binaryName()), maxBinary)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		os.Remove(dst)
		return fmt.Errorf("%s: checksum mismatch: sha256 %s, %s says %s", source(p, binaryName()), got, checksumName(), want)
	}
	v, err := binaryVersion(ctx, dst)
	if err != nil {
		os.Remove(dst)
		return err
	}
	if v != p.Version {
		os.Remove(dst)
		return fmt.Errorf("%s is kedge %s, the Upgrade asks for %s", source(p, binaryName()), v, p.Version)
	}
	return nil
}

// source names a file of the plan's source in messages.
func source(p Plan, name string) string {
	if p.URL != "" {
		return strings.TrimSuffix(p.URL, "/") + "/" + name
	}
	return filepath.Join(p.Path, name)
}

// open opens a file of the plan's source: a local file, or an HTTP GET.
func open(ctx context.Context, p Plan, name string) (io.ReadCloser, error) {
	where := source(p, name)
	if p.Path != "" {
		f, err := os.Open(where)
		if err != nil {
			return nil, err
		}
		return f, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, where, nil)
	if err != nil {
		return nil, err
	}
	client := &http.Client{Timeout: 10 * time.Minute}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("GET %s: %s", where, resp.Status)
	}
	return resp.Body, nil
}

// readChecksum finds name's hash in a sha256sum file ("<hex>  <name>").
func readChecksum(r io.Reader, name string) (string, error) {
	sc := bufio.NewScanner(io.LimitReader(r, 1<<20))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && strings.TrimPrefix(f[1], "*") == name {
			if _, err := hex.DecodeString(f[0]); err != nil || len(f[0]) != sha256.Size*2 {
				return "", fmt.Errorf("bad sha256 %q for %s", f[0], name)
			}
			return strings.ToLower(f[0]), nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	return "", fmt.Errorf("no checksum for %s", name)
}

// binaryVersion runs `bin --version` ("kedge version v1.37.2+kedge1 (…) …")
// and returns the version's first word.
func binaryVersion(ctx context.Context, bin string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("%s --version: %w", bin, err)
	}
	f := strings.Fields(string(out))
	for i, w := range f {
		if w == "version" && i+1 < len(f) {
			return f[i+1], nil
		}
	}
	return "", fmt.Errorf("%s --version: no version in %q", bin, strings.TrimSpace(string(out)))
}

// install puts the fetched binary in place of exe (a rename: the running
// process keeps its file; exe's symlinks are followed).
func install(fetched, exe string) error {
	target, err := filepath.EvalSymlinks(exe)
	if err != nil {
		return err
	}
	tmp := target + ".kedge-upgrade"
	if err := copyFile(fetched, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, target); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// copyFile copies src to dst (0755, synced): dst is on exe's filesystem,
// where a rename is atomic.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o755)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if err == nil {
		err = out.Sync()
	}
	return errors.Join(err, out.Close())
}
