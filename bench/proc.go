package bench

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// ClockTicks is USER_HZ, the unit of the CPU times in /proc/<pid>/stat. The
// kernel exports them in USER_HZ, which is 100 on every Linux architecture
// kedge runs on, whatever CONFIG_HZ is.
const ClockTicks = 100

// ProcFS reads processes from a procfs mount; Root is "/proc" on a host and
// a fixture directory in tests.
type ProcFS struct {
	Root string
}

// Process is one entry of a process table snapshot.
type Process struct {
	PID   int
	PPID  int
	Argv  []string // from cmdline; empty for kernel threads
	MntNS string   // the ns/mnt link target, "" if unreadable
}

// Stat holds the fields of /proc/<pid>/stat the benchmarks use.
type Stat struct {
	Comm                         string
	State                        byte
	PPID                         int
	UTime, STime, CUTime, CSTime uint64 // clock ticks (ClockTicks per second)
}

// CPUTicks is the CPU time the process used, including the children it
// waited for (kube-proxy's iptables, kubelet's mount and nsenter runs,
// a shim's runc calls): work the setup did, even if the child is gone.
func (s Stat) CPUTicks() uint64 { return s.UTime + s.STime + s.CUTime + s.CSTime }

// Memory holds the memory figures of a process, in bytes: RSS, PSS and
// Private_Dirty from /proc/<pid>/smaps_rollup, RssAnon from /proc/<pid>/status.
type Memory struct {
	RSS uint64 // resident set size: every page mapped, shared or not
	PSS uint64 // proportional set size: shared pages divided among their users
	// PrivateDirty is Private_Dirty: pages only this process maps and has
	// written (its anonymous memory and written private file pages, such as
	// the binary's .data). Reclaiming them needs swap.
	PrivateDirty uint64
	// Anon is RssAnon: resident anonymous pages (heap, stacks, Go's arenas),
	// what paging out the binary's clean file pages cannot lower.
	Anon uint64
}

// ParseStat parses the contents of /proc/<pid>/stat. The command name is
// in parentheses and may itself contain spaces and parentheses, so the
// fields are counted from the last ')'.
func ParseStat(raw []byte) (Stat, error) {
	open := bytes.IndexByte(raw, '(')
	closing := bytes.LastIndexByte(raw, ')')
	if open < 0 || closing < open {
		return Stat{}, errors.New("stat: no (comm)")
	}
	f := strings.Fields(string(raw[closing+1:]))
	// f[0] is field 3 (state); utime..cstime are fields 14..17.
	if len(f) < 15 {
		return Stat{}, fmt.Errorf("stat: %d fields after comm, want at least 15", len(f))
	}
	s := Stat{Comm: string(raw[open+1 : closing]), State: f[0][0]}
	var err error
	if s.PPID, err = strconv.Atoi(f[1]); err != nil {
		return Stat{}, fmt.Errorf("stat: ppid: %w", err)
	}
	for i, p := range []*uint64{&s.UTime, &s.STime, &s.CUTime, &s.CSTime} {
		// cutime and cstime are signed in the kernel but never negative.
		if *p, err = strconv.ParseUint(f[11+i], 10, 64); err != nil {
			return Stat{}, fmt.Errorf("stat: field %d: %w", 14+i, err)
		}
	}
	return s, nil
}

// ParseSmapsRollup parses the Rss, Pss and Private_Dirty lines of
// /proc/<pid>/smaps_rollup (values in kB) into bytes; Anon stays 0.
func ParseSmapsRollup(raw []byte) (Memory, error) {
	var m Memory
	if err := parseKBFields("smaps_rollup", raw, map[string]*uint64{"Rss": &m.RSS, "Pss": &m.PSS, "Private_Dirty": &m.PrivateDirty}); err != nil {
		return Memory{}, err
	}
	return m, nil
}

// ParseStatusRssAnon parses the RssAnon line of /proc/<pid>/status (in kB)
// into bytes. A kernel thread or a zombie has none: an error.
func ParseStatusRssAnon(raw []byte) (uint64, error) {
	var anon uint64
	if err := parseKBFields("status", raw, map[string]*uint64{"RssAnon": &anon}); err != nil {
		return 0, err
	}
	return anon, nil
}

// parseKBFields reads the "Key:   123 kB" lines of a procfs file named
// file into the fields of want, in bytes; every key must be present.
func parseKBFields(file string, raw []byte, want map[string]*uint64) error {
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		key, rest, ok := strings.Cut(sc.Text(), ":")
		dst := want[key]
		if !ok || dst == nil {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return fmt.Errorf("%s: malformed %s line %q", file, key, sc.Text())
		}
		kb, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return fmt.Errorf("%s: %s: %w", file, key, err)
		}
		*dst = kb * 1024
		seen[key] = true
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	var missing []string
	for key := range want {
		if !seen[key] {
			missing = append(missing, key)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return fmt.Errorf("%s: no %s line", file, strings.Join(missing, ", "))
	}
	return nil
}

// Stat reads /proc/<pid>/stat.
func (p ProcFS) Stat(pid int) (Stat, error) {
	raw, err := os.ReadFile(filepath.Join(p.Root, strconv.Itoa(pid), "stat"))
	if err != nil {
		return Stat{}, err
	}
	return ParseStat(raw)
}

// Memory reads /proc/<pid>/smaps_rollup and /proc/<pid>/status.
func (p ProcFS) Memory(pid int) (Memory, error) {
	dir := filepath.Join(p.Root, strconv.Itoa(pid))
	raw, err := os.ReadFile(filepath.Join(dir, "smaps_rollup"))
	if err != nil {
		return Memory{}, err
	}
	m, err := ParseSmapsRollup(raw)
	if err != nil {
		return Memory{}, err
	}
	if raw, err = os.ReadFile(filepath.Join(dir, "status")); err != nil {
		return Memory{}, err
	}
	m.Anon, err = ParseStatusRssAnon(raw)
	return m, err
}

// Processes returns a snapshot of every process, by PID. Processes that
// exit while it reads are left out.
func (p ProcFS) Processes() (map[int]Process, error) {
	entries, err := os.ReadDir(p.Root)
	if err != nil {
		return nil, err
	}
	out := map[int]Process{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := p.Stat(pid)
		if err != nil {
			continue // gone
		}
		dir := filepath.Join(p.Root, e.Name())
		cmdline, _ := os.ReadFile(filepath.Join(dir, "cmdline"))
		mnt, _ := os.Readlink(filepath.Join(dir, "ns", "mnt"))
		out[pid] = Process{PID: pid, PPID: st.PPID, Argv: splitCmdline(cmdline), MntNS: mnt}
	}
	return out, nil
}

func splitCmdline(raw []byte) []string {
	raw = bytes.TrimRight(raw, "\x00")
	if len(raw) == 0 {
		return nil
	}
	return strings.Split(string(raw), "\x00")
}

// Descendants returns the PIDs of every process below pid in procs (children,
// their children, …), sorted. prune, if not nil, stops the walk: a process
// for which it returns true is neither listed nor descended into.
func Descendants(procs map[int]Process, pid int, prune func(Process) bool) []int {
	children := map[int][]int{}
	for _, p := range procs {
		children[p.PPID] = append(children[p.PPID], p.PID)
	}
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		for _, c := range children[cur] {
			if prune != nil && prune(procs[c]) {
				continue
			}
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	sort.Ints(out)
	return out
}

// Usage is the resource use of a set of processes at one moment.
type Usage struct {
	Procs    int
	Memory          // sums over the processes
	CPUTicks uint64 // sum of Stat.CPUTicks
}

// Measure sums memory and CPU time over pids. A process that exits while
// it reads is skipped; it fails only if none could be read.
func (p ProcFS) Measure(pids []int) (Usage, map[int]uint64, error) {
	var u Usage
	ticks := map[int]uint64{}
	var firstErr error
	for _, pid := range pids {
		st, err := p.Stat(pid)
		if err == nil {
			var m Memory
			if m, err = p.Memory(pid); err == nil {
				u.Procs++
				u.RSS += m.RSS
				u.PSS += m.PSS
				u.PrivateDirty += m.PrivateDirty
				u.Anon += m.Anon
				ticks[pid] = st.CPUTicks()
				u.CPUTicks += st.CPUTicks()
				continue
			}
		}
		if firstErr == nil {
			firstErr = fmt.Errorf("pid %d: %w", pid, err)
		}
	}
	if u.Procs == 0 {
		if firstErr == nil {
			firstErr = errors.New("no processes")
		}
		return Usage{}, nil, fmt.Errorf("measure: %w", firstErr)
	}
	return u, ticks, nil
}

// CPUDelta is the CPU time used between two snapshots of per-PID ticks, in
// seconds. A process present only in after counts in full (it started in
// between); one present only in before is lost (its time cannot be read
// any more), which at idle is a short helper at most.
func CPUDelta(before, after map[int]uint64) float64 {
	var d uint64
	for pid, a := range after {
		if b, ok := before[pid]; ok && a >= b {
			d += a - b
		} else if !ok {
			d += a
		}
	}
	return float64(d) / ClockTicks
}
