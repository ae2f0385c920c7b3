package footprint

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

func TestMappings(t *testing.T) {
	maps := `00400000-00402000 r--p 00000000 fe:01 1234       /usr/local/bin/kedge
00402000-04e48000 r-xp 00002000 fe:01 1234       /usr/local/bin/kedge
04e48000-09efa000 r--p 04a48000 fe:01 1234       /usr/local/bin/kedge
0dc00000-0dc80000 rw-p 09800000 fe:01 1234       /usr/local/bin/kedge
0dc80000-0fe00000 rw-p 00000000 00:00 0
7f0000000000-7f0000021000 r--p 00000000 fe:01 99   /usr/lib/x86_64-linux-gnu/libc.so.6
7f0000100000-7f0000101000 r--s 00000000 00:05 7    /usr/local/bin/kedge
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0    [stack]
`
	got, err := Mappings(strings.NewReader(maps), "/usr/local/bin/kedge")
	if err != nil {
		t.Fatal(err)
	}
	want := []Mapping{{0x400000, 0x402000, "r--p"}, {0x402000, 0x4e48000, "r-xp"}, {0x4e48000, 0x9efa000, "r--p"}}
	if len(got) != len(want) {
		t.Fatalf("Mappings = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("mapping %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if _, err := Mappings(strings.NewReader("zz-00 r--p 0 0:0 1 /x\n"), "/x"); err == nil {
		t.Error("a bad range was accepted")
	}
}

// TestReleaseShrinksTheExecutablesResidentPages runs Release in this test
// binary: the resident pages of its own text and read-only data go down.
func TestReleaseShrinksTheExecutablesResidentPages(t *testing.T) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		t.Skip(err)
	}
	before := exeRSS(t, exe)
	n, err := Release()
	if err != nil {
		t.Fatal(err)
	}
	after := exeRSS(t, exe)
	t.Logf("advised %d KiB; resident pages of %s: %d KiB → %d KiB", n>>10, exe, before, after)
	if n == 0 {
		t.Fatal("no mapping advised")
	}
	if after >= before {
		t.Fatalf("resident pages of the executable did not go down: %d KiB → %d KiB", before, after)
	}
}

// exeRSS sums the Rss of the executable's mappings in /proc/self/smaps (KiB).
func exeRSS(t *testing.T, exe string) int {
	t.Helper()
	raw, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Skip(err)
	}
	total, in := 0, false
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if strings.Contains(f[0], "-") && len(f) >= 5 {
			in = len(f) >= 6 && strings.Join(f[5:], " ") == exe
			continue
		}
		if in && f[0] == "Rss:" && len(f) >= 2 {
			kb, err := strconv.Atoi(f[1])
			if err != nil {
				t.Fatalf("smaps: %q: %v", line, err)
			}
			total += kb
		}
	}
	return total
}
