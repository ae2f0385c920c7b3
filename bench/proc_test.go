package bench

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestParseStatSelf(t *testing.T) {
	raw, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		t.Skip("no procfs:", err)
	}
	st, err := ParseStat(raw)
	if err != nil {
		t.Fatal(err)
	}
	if st.PPID != os.Getppid() {
		t.Errorf("ppid = %d, want %d", st.PPID, os.Getppid())
	}
	// comm is the executable's name, cut to 15 bytes by the kernel.
	if want := filepath.Base(os.Args[0]); !strings.HasPrefix(want, st.Comm) || st.Comm == "" {
		t.Errorf("comm = %q, want a prefix of %q", st.Comm, want)
	}
	if !strings.ContainsRune("RS", rune(st.State)) {
		t.Errorf("state = %q, want R or S", st.State)
	}
}

func TestParseStatOddComm(t *testing.T) {
	// A command name with spaces and a ')' of its own; fields 14–17 are 11 12 13 14.
	raw := []byte("4242 (my (odd) name) S 17 4242 4242 0 -1 4194560 100 0 0 0 11 12 13 14 20 0 9 0 300 1000 50 18446744073709551615\n")
	st, err := ParseStat(raw)
	if err != nil {
		t.Fatal(err)
	}
	want := Stat{Comm: "my (odd) name", State: 'S', PPID: 17, UTime: 11, STime: 12, CUTime: 13, CSTime: 14}
	if st != want {
		t.Errorf("got %+v, want %+v", st, want)
	}
	if st.CPUTicks() != 50 {
		t.Errorf("CPUTicks = %d, want 50", st.CPUTicks())
	}
	for _, bad := range []string{"", "1 no-parens S 1", "1 (x) S 1 2 3", "1 (x) S one 1 1 0 -1 0 0 0 0 0 1 2 3 4"} {
		if _, err := ParseStat([]byte(bad)); err == nil {
			t.Errorf("ParseStat(%q) succeeded", bad)
		}
	}
}

func TestCPUTicksGrowWithWork(t *testing.T) {
	procfs := ProcFS{Root: "/proc"}
	before, err := procfs.Stat(os.Getpid())
	if err != nil {
		t.Skip("no procfs:", err)
	}
	// Burn 300 ms of CPU time (not of wall time: on a loaded machine the
	// test may get a fraction of a core): at least 10 of the 30 ticks must show.
	cpu := func() time.Duration {
		var ru syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	end := cpu() + 300*time.Millisecond
	x := 0
	for cpu() < end {
		for i := 0; i < 100000; i++ {
			x++
		}
	}
	after, err := procfs.Stat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if d := after.CPUTicks() - before.CPUTicks(); d < 10 {
		t.Errorf("CPU ticks grew by %d after 300 ms of work (x=%d)", d, x)
	}
}

func TestParseSmapsRollupFixture(t *testing.T) {
	raw, err := os.ReadFile("testdata/smaps_rollup")
	if err != nil {
		t.Fatal(err)
	}
	m, err := ParseSmapsRollup(raw)
	if err != nil {
		t.Fatal(err)
	}
	// Rss, Pss and Private_Dirty only, not Pss_Dirty, Pss_Anon, Anonymous or
	// SwapPss; Anon comes from status.
	if want := (Memory{RSS: 473612 * 1024, PSS: 471088 * 1024, PrivateDirty: 402120 * 1024}); m != want {
		t.Errorf("got %+v, want %+v", m, want)
	}
	const ok = "Rss: 12 kB\nPss: 11 kB\nPrivate_Dirty: 3 kB\n"
	if m, err := ParseSmapsRollup([]byte(ok)); err != nil || m != (Memory{RSS: 12 << 10, PSS: 11 << 10, PrivateDirty: 3 << 10}) {
		t.Errorf("ParseSmapsRollup(%q) = %+v, %v", ok, m, err)
	}
	for _, bad := range []string{"", "Rss: 12 kB\n", "Rss: 12 kB\nPss: 1 kB\n", "Rss: 12 kB\nPss: x kB\nPrivate_Dirty: 3 kB\n",
		"Rss: 12 MB\nPss: 1 kB\nPrivate_Dirty: 3 kB\n", "Rss: 12 kB\nPss: 1 kB\nPrivate_Dirty: 3\n"} {
		if _, err := ParseSmapsRollup([]byte(bad)); err == nil {
			t.Errorf("ParseSmapsRollup(%q) succeeded", bad)
		}
	}
}

func TestParseStatusRssAnonFixture(t *testing.T) {
	raw, err := os.ReadFile("testdata/status")
	if err != nil {
		t.Fatal(err)
	}
	// RssAnon, not VmRSS, RssFile or VmData.
	anon, err := ParseStatusRssAnon(raw)
	if err != nil || anon != 401980*1024 {
		t.Errorf("got %d, %v; want %d", anon, err, 401980*1024)
	}
	// A kernel thread's or zombie's status has no memory lines.
	for _, bad := range []string{"", "Name:\tkthreadd\nState:\tS (sleeping)\nKthread:\t1\n", "RssAnon:\t-1 kB\n", "RssAnon:\t12 MB\n", "RssAnon:\n"} {
		if got, err := ParseStatusRssAnon([]byte(bad)); err == nil {
			t.Errorf("ParseStatusRssAnon(%q) = %d, want an error", bad, got)
		}
	}
}

func TestMemorySelf(t *testing.T) {
	procfs := ProcFS{Root: "/proc"}
	m, err := procfs.Memory(os.Getpid())
	if err != nil {
		t.Skip("no smaps_rollup:", err)
	}
	// A Go test binary maps at least a few MiB; PSS never exceeds RSS.
	if m.RSS < 1<<20 || m.PSS == 0 || m.PSS > m.RSS {
		t.Errorf("implausible memory of the test process: %+v", m)
	}
	// Go's heap and stacks are anonymous and written; neither exceeds RSS.
	if m.Anon == 0 || m.Anon > m.RSS || m.PrivateDirty == 0 || m.PrivateDirty > m.RSS {
		t.Errorf("implausible anonymous memory of the test process: %+v", m)
	}
	// Touching 64 MiB of fresh memory shows in both.
	buf := make([]byte, 64<<20)
	for i := range buf {
		if i%4096 == 0 {
			buf[i] = 1
		}
	}
	after, err := procfs.Memory(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if after.Anon < m.Anon+48<<20 || after.PrivateDirty < m.PrivateDirty+48<<20 {
		t.Errorf("64 MiB touched: anon %d → %d, private dirty %d → %d", m.Anon, after.Anon, m.PrivateDirty, after.PrivateDirty)
	}
	runtime.KeepAlive(buf)
}

func TestProcessesAndDescendants(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Skip("no sleep:", err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	procs, err := ProcFS{Root: "/proc"}.Processes()
	if err != nil {
		t.Skip("no procfs:", err)
	}
	self, ok := procs[os.Getpid()]
	if !ok || len(self.Argv) == 0 || self.Argv[0] != os.Args[0] {
		t.Fatalf("self: %+v, want argv[0] %q", self, os.Args[0])
	}
	child := procs[cmd.Process.Pid]
	if child.PPID != os.Getpid() || !reflect.DeepEqual(child.Argv, []string{"sleep", "30"}) {
		t.Errorf("child: %+v", child)
	}
	if child.MntNS == "" || child.MntNS != self.MntNS {
		t.Errorf("mount namespaces: child %q, self %q", child.MntNS, self.MntNS)
	}
	if d := Descendants(procs, os.Getpid(), nil); !slices.Contains(d, cmd.Process.Pid) {
		t.Errorf("descendants of the test %v lack the child %d", d, cmd.Process.Pid)
	}
	u, ticks, err := ProcFS{Root: "/proc"}.Measure([]int{os.Getpid(), cmd.Process.Pid, 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	if u.Procs != 2 || len(ticks) != 2 || u.RSS == 0 || u.Anon == 0 || u.PrivateDirty == 0 {
		t.Errorf("measure of self + child (+ a missing pid): %+v, ticks %v", u, ticks)
	}
}

// tree is a synthetic process table: kedge (100) with a child (101) and a
// grandchild (102); shims of kedge's containerd, one reparented to init
// (200) and one a child of kedge (103), each with a container below; a
// shim of another containerd (300), one of another mount namespace (400).
func tree() map[int]Process {
	shim := func(pid, ppid int, addr, mnt string) Process {
		return Process{PID: pid, PPID: ppid, MntNS: mnt,
			Argv: []string{"/var/lib/kedge/data/x/bin/" + ShimName, "-namespace", "k8s.io", "-address", addr, "-publish-binary", "/bin/kedge", "-id", "c"}}
	}
	const host = "mnt:[1]"
	ps := []Process{
		{PID: 1, PPID: 0, Argv: []string{"/sbin/init"}, MntNS: host},
		{PID: 100, PPID: 1, Argv: []string{"bin/kedge", "server"}, MntNS: host},
		{PID: 101, PPID: 100, Argv: []string{"iptables", "-L"}, MntNS: host},
		{PID: 102, PPID: 101, Argv: []string{"modprobe"}, MntNS: host},
		shim(103, 100, "/run/kedge/containerd/containerd.sock", host),
		{PID: 104, PPID: 103, Argv: []string{"/webapp"}, MntNS: "mnt:[9]"},
		shim(200, 1, "/run/kedge/containerd/containerd.sock", host),
		{PID: 201, PPID: 200, Argv: []string{"/pause"}, MntNS: "mnt:[8]"},
		{PID: 202, PPID: 201, Argv: []string{"/pause-child"}, MntNS: "mnt:[8]"},
		shim(300, 1, "/run/containerd/containerd.sock", host),
		shim(400, 1, "/run/kedge/containerd/containerd.sock", "mnt:[2]"),
	}
	m := map[int]Process{}
	for _, p := range ps {
		m[p.PID] = p
	}
	return m
}

func TestDescendantsPrune(t *testing.T) {
	procs := tree()
	if got, want := Descendants(procs, 100, nil), []int{101, 102, 103, 104}; !reflect.DeepEqual(got, want) {
		t.Errorf("all descendants = %v, want %v", got, want)
	}
	if got, want := Descendants(procs, 100, IsShim), []int{101, 102}; !reflect.DeepEqual(got, want) {
		t.Errorf("pruned at shims = %v, want %v", got, want)
	}
	if got := Descendants(procs, 102, nil); len(got) != 0 {
		t.Errorf("leaf has descendants %v", got)
	}
}

func TestSetupPIDs(t *testing.T) {
	procs := tree()
	// kedge, its children, both of its shims; no container, no other containerd's
	// shim, no shim of another mount namespace.
	want := []int{100, 101, 102, 103, 200}
	if got := SetupPIDs(procs, []int{100}, KedgeRunDir+"/"); !reflect.DeepEqual(got, want) {
		t.Errorf("SetupPIDs = %v, want %v", got, want)
	}
	// A setup of separate processes: roots that are gone are skipped.
	if got, want := SetupPIDs(procs, []int{999, 101}, "/run/containerd/"), []int{101, 102, 300}; !reflect.DeepEqual(got, want) {
		t.Errorf("baseline-like, first root gone = %v, want %v", got, want)
	}
	if got := SetupPIDs(procs, []int{999}, "/run/"); len(got) != 0 {
		t.Errorf("no live root = %v, want nothing", got)
	}
}

func TestShimAddress(t *testing.T) {
	for argv, want := range map[string]string{
		"shim -namespace k8s.io -address /run/a.sock -id x": "/run/a.sock",
		"shim --address /run/b.sock":                        "/run/b.sock",
		"shim -address=/run/c.sock":                         "/run/c.sock",
		"shim -address":                                     "",
		"shim":                                              "",
	} {
		if got := shimAddress(strings.Fields(argv)); got != want {
			t.Errorf("shimAddress(%q) = %q, want %q", argv, got, want)
		}
	}
}

func TestCPUDelta(t *testing.T) {
	before := map[int]uint64{1: 100, 2: 50, 3: 10}
	after := map[int]uint64{1: 150, 2: 50, 4: 25} // 3 exited, 4 started
	if got := CPUDelta(before, after); got != 0.75 {
		t.Errorf("CPUDelta = %v, want 0.75 s (50 + 0 + 25 ticks)", got)
	}
}
