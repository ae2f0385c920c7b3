package netpol

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"slices"
	"testing"

	"github.com/cloudnativelabs/kube-router/v2/pkg/utils"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// TestNetlinkEntriesNomatch: kube-router's ipBlock with except (a hash:net
// set with nomatch entries) becomes the prefixes of the same addresses.
func TestNetlinkEntriesNomatch(t *testing.T) {
	got, err := netlinkEntries(utils.TypeHashNet, [][]string{
		{"0.0.0.0/1", "timeout", "0"}, {"128.0.0.0/1", "timeout", "0"},
		{"0.0.0.0/1", "timeout", "0", "nomatch"}, {"128.0.0.0/1", "timeout", "0", "nomatch"}, // 0.0.0.0/0 except 0.0.0.0/0
		{"10.0.0.0/8", "timeout", "0"}, {"10.128.0.0/9", "timeout", "0", "nomatch"},
		{"192.168.1.7", "timeout", "0"},
	})
	if err != nil {
		t.Fatal(err)
	}
	var s []string
	for _, e := range got {
		s = append(s, fmt.Sprintf("%s/%d", e.IP, e.CIDR))
	}
	if want := []string{"10.0.0.0/9", "192.168.1.7/32"}; !slices.Equal(s, want) {
		t.Fatalf("entries %v, want %v", s, want)
	}
	all, err := netlinkEntries(utils.TypeHashNet, [][]string{{"0.0.0.0/1", "timeout", "0"}, {"128.0.0.0/1", "timeout", "0"}})
	if err != nil || len(all) != 2 || all[0].CIDR != 1 || all[1].IP.String() != "128.0.0.0" {
		t.Fatalf("0.0.0.0/0 as %v, %v; want two /1", all, err)
	}
	for _, bad := range [][]string{{"10.0.0.0/8"}, {"not-an-ip"}, {"10.0.0.1", "bogus"}} {
		if _, err := netlinkEntries(utils.TypeHashIP, [][]string{bad}); err == nil {
			t.Errorf("hash:ip entry %v accepted", bad)
		}
	}
}

// inNetns runs f on a locked thread in a new network namespace, whose
// ipsets are its own (root needed; skipped otherwise).
func inNetns(t *testing.T, f func()) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for a network namespace")
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	ns, err := netns.New()
	if err != nil {
		t.Skipf("new network namespace: %v", err)
	}
	defer func() {
		if err := netns.Set(orig); err != nil {
			panic(err) // the thread must not go back to the pool in ns
		}
		ns.Close()
	}()
	f()
}

// members lists set name's entries as "ip/cidr".
func members(t *testing.T, name string) []string {
	t.Helper()
	r, err := netlink.IpsetList(name)
	if err != nil {
		t.Fatalf("list %s: %v", name, err)
	}
	var out []string
	for _, e := range r.Entries {
		out = append(out, fmt.Sprintf("%s/%d", e.IP, e.CIDR))
	}
	slices.Sort(out)
	return out
}

// TestIPSetsKernel: the handler against the kernel's ip_set: Restore gives
// each set exactly its entries (swapped in), Save destroys the
// controller's sets not refreshed since the previous Save and leaves other
// sets alone.
func TestIPSetsKernel(t *testing.T) {
	inNetns(t, func() {
		s, err := newIPSets(false, slog.Default())
		if err != nil {
			t.Skipf("ip_set: %v", err)
		}
		dst, src := "KUBE-DST-AAAAAAAAAAAAAAAA", "KUBE-SRC-BBBBBBBBBBBBBBBB"
		s.RefreshSet(dst, [][]string{{"10.42.0.5", "timeout", "0"}, {"10.42.1.9", "timeout", "0"}}, utils.TypeHashIP)
		s.RefreshSet(src, [][]string{{"10.0.0.0/8", "timeout", "0"}, {"10.1.0.0/16", "timeout", "0", "nomatch"}}, utils.TypeHashNet)
		if err := s.Restore(); err != nil {
			t.Fatal(err)
		}
		if got := members(t, dst); !slices.Equal(got, []string{"10.42.0.5/0", "10.42.1.9/0"}) && !slices.Equal(got, []string{"10.42.0.5/32", "10.42.1.9/32"}) {
			t.Fatalf("%s: %v", dst, got)
		}
		if got := members(t, src); len(got) != 8 { // 10/8 minus 10.1/16: /16 /15 /14 … /9 and 10.0/16
			t.Fatalf("%s: %d prefixes %v, want 8", src, len(got), got)
		}
		// The kernel's match agrees with the policy: 10.1.2.3 excluded.
		for ip, want := range map[string]bool{"10.2.3.4": true, "10.1.2.3": false, "11.0.0.1": false} {
			ok, err := netlink.IpsetTest(src, &netlink.IPSetEntry{IP: net.ParseIP(ip)})
			if err != nil || ok != want {
				t.Fatalf("test %s in %s: %v, %v; want %v", ip, src, ok, err, want)
			}
		}
		// Someone else's set, and a scratch set that must not stay.
		if err := netlink.IpsetCreate("other", "hash:ip", netlink.IpsetCreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := s.Save(); err != nil {
			t.Fatal(err)
		}
		if len(s.Sets()) != 2 {
			t.Fatalf("after Save: %d sets, want 2", len(s.Sets()))
		}
		// Next sync: only dst is still a policy's, with other entries.
		s.RefreshSet(dst, [][]string{{"10.42.2.2", "timeout", "0"}}, utils.TypeHashIP)
		if err := s.Restore(); err != nil {
			t.Fatal(err)
		}
		if err := s.Save(); err != nil {
			t.Fatal(err)
		}
		all, err := netlink.IpsetListAll()
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, r := range all {
			names = append(names, r.SetName)
		}
		slices.Sort(names)
		if want := []string{dst, "other"}; !slices.Equal(names, want) {
			t.Fatalf("sets %v, want %v (stale %s destroyed, no scratch set left)", names, want, src)
		}
		if got := members(t, dst); len(got) != 1 || got[0][:9] != "10.42.2.2" {
			t.Fatalf("%s after the second sync: %v", dst, got)
		}
		if _, err := s.Create("KUBE-DST-CCCCCCCCCCCCCCCC", "hash:ip,port"); err == nil {
			t.Fatal("a set type the handler does not write was accepted")
		}
	})
}
