package bench

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
)

// SizeResult is the size of a download: the files and the files compressed.
type SizeResult struct {
	Raw  int64 // sum of the files' sizes
	Gzip int64 // gzip -9
	Zstd int64 // zstd -19
}

// DownloadSize measures files as one download: a single file as itself
// (bin/kedge), several as one tar (the baseline's binaries), compressed
// with gzip -9 and zstd -19 (the two run concurrently).
func DownloadSize(ctx context.Context, files []string) (SizeResult, error) {
	if len(files) == 0 {
		return SizeResult{}, errors.New("size: no files")
	}
	var r SizeResult
	for _, f := range files {
		st, err := os.Stat(f)
		if err != nil {
			return SizeResult{}, fmt.Errorf("size: %w", err)
		}
		r.Raw += st.Size()
	}
	type out struct {
		n   int64
		err error
	}
	gz, zs := make(chan out, 1), make(chan out, 1)
	for _, c := range []struct {
		argv []string
		ch   chan out
	}{{[]string{"gzip", "-9", "-c", "-n"}, gz}, {[]string{"zstd", "-19", "-c", "-q"}, zs}} {
		go func() {
			n, err := compressedSize(ctx, files, c.argv)
			c.ch <- out{n, err}
		}()
	}
	g, z := <-gz, <-zs
	if err := errors.Join(g.err, z.err); err != nil {
		return SizeResult{}, err
	}
	r.Gzip, r.Zstd = g.n, z.n
	return r, nil
}

// compressedSize pipes the download (the file, or a tar of the files)
// through argv and counts the output.
func compressedSize(ctx context.Context, files []string, argv []string) (int64, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return 0, err
	}
	var count countWriter
	cmd.Stdout = &count
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("size: %s: %w", argv[0], err)
	}
	werr := writeDownload(stdin, files)
	cerr := stdin.Close()
	if err := cmd.Wait(); err != nil {
		return 0, fmt.Errorf("size: %s: %w", argv[0], err)
	}
	if err := errors.Join(werr, cerr); err != nil {
		return 0, fmt.Errorf("size: %s: %w", argv[0], err)
	}
	return count.n, nil
}

// writeDownload writes the single file, or a tar of the files (by base name).
func writeDownload(w io.Writer, files []string) error {
	if len(files) == 1 {
		f, err := os.Open(files[0])
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(w, f)
		return err
	}
	tw := tar.NewWriter(w)
	for _, name := range files {
		if err := addToTar(tw, name); err != nil {
			return err
		}
	}
	return tw.Close()
}

func addToTar(tw *tar.Writer, name string) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	hdr, err := tar.FileInfoHeader(st, "")
	if err != nil {
		return err
	}
	hdr.Name = filepath.Base(name)
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	_, err = io.Copy(tw, f)
	return err
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return len(p), nil
}
