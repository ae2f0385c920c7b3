// Package footprint gives back memory the kedge process needed only to start.
//
// kedge is one large binary (every upstream component's code). Package
// initialisation runs code spread over all of it, and the kernel's
// fault-around maps 64 KiB of the file around each page fault, so right after
// start-up most of the binary's text and read-only data is mapped and counted
// in the process's RSS, although a running node uses a fraction of it. The Go
// heap likewise keeps the pages of start-up garbage until its scavenger
// returns them. Release asks the kernel to reclaim the binary's clean pages
// (MADV_PAGEOUT; pages in use fault back in from the file) and the Go runtime
// to return free heap pages.
//
//	go footprint.Keep(ctx, log) // after the components are ready
package footprint

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Mapping is one file-backed, non-writable mapping of the executable.
type Mapping struct {
	Start, End uint64
	Perms      string
}

// Mappings lists the read-only and executable mappings of file exe in a
// /proc/<pid>/maps listing: the binary's text and read-only data. Writable
// mappings (.data, .bss) are left out: their pages may be dirty.
func Mappings(maps io.Reader, exe string) ([]Mapping, error) {
	var out []Mapping
	s := bufio.NewScanner(maps)
	s.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for s.Scan() {
		// 00400000-04e48000 r-xp 00000000 fe:01 1234   /usr/local/bin/kedge
		f := strings.Fields(s.Text())
		if len(f) < 6 || strings.Join(f[5:], " ") != exe {
			continue
		}
		perms := f[1]
		if len(perms) < 4 || perms[0] != 'r' || perms[1] != '-' || perms[3] != 'p' {
			continue
		}
		lo, hi, ok := strings.Cut(f[0], "-")
		if !ok {
			return nil, fmt.Errorf("maps: bad range %q", f[0])
		}
		start, err := strconv.ParseUint(lo, 16, 64)
		if err != nil {
			return nil, fmt.Errorf("maps: bad range %q: %w", f[0], err)
		}
		end, err := strconv.ParseUint(hi, 16, 64)
		if err != nil || end <= start {
			return nil, fmt.Errorf("maps: bad range %q", f[0])
		}
		out = append(out, Mapping{Start: start, End: end, Perms: perms})
	}
	return out, s.Err()
}

// Release reclaims the executable's clean text and read-only data pages and
// returns free Go heap pages to the kernel. It returns how many bytes of
// mappings it advised.
func Release() (uint64, error) {
	debug.FreeOSMemory()
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return 0, err
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	maps, err := Mappings(f, exe)
	if err != nil {
		return 0, err
	}
	var total uint64
	for _, m := range maps {
		if err := advise(m, unix.MADV_PAGEOUT); errors.Is(err, unix.EINVAL) {
			// Kernels before 5.4 have no MADV_PAGEOUT: unmap the pages
			// instead; they stay in the page cache.
			err = advise(m, unix.MADV_DONTNEED)
		} else if err != nil {
			return total, fmt.Errorf("madvise %x-%x: %w", m.Start, m.End, err)
		}
		total += m.End - m.Start
	}
	return total, nil
}

func advise(m Mapping, advice int) error {
	_, _, errno := unix.Syscall(unix.SYS_MADVISE, uintptr(m.Start), uintptr(m.End-m.Start), uintptr(advice))
	if errno != 0 {
		return errno
	}
	return nil
}

// Keep releases memory 5 s after it is called (call it at the end of
// start-up: the wait keeps the page faults a release causes out of the
// node's first status updates and first pods), again 30 s later (after the
// first syncs of the components that have just started), then every 5
// minutes, until ctx is done. It logs the process's
// RSS before and after the first release.
func Keep(ctx context.Context, log *slog.Logger) {
	schedule := []time.Duration{5 * time.Second, 30 * time.Second, 5 * time.Minute}
	for i := 0; ; i++ {
		wait := schedule[min(i, len(schedule)-1)]
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		before := rss()
		n, err := Release()
		if err != nil {
			log.Warn("could not release start-up memory", "component", "footprint", "err", err)
			return
		}
		if i == 0 {
			log.Info("released start-up memory", "component", "footprint", "advised_mib", n>>20,
				"rss_before_mib", before>>20, "rss_after_mib", rss()>>20)
		}
	}
}

// rss is the process's resident set size in bytes, 0 if unknown.
func rss() uint64 {
	raw, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(raw))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseUint(f[1], 10, 64)
	return pages * uint64(os.Getpagesize())
}
