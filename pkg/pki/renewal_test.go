package pki

import (
	"crypto/x509"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestRenewWindow(t *testing.T) {
	day := 24 * time.Hour
	for _, c := range []struct {
		lifetime, want time.Duration
	}{
		{DefaultLeafValidity, 90 * day},
		{DefaultLeafValidity + time.Hour, 90 * day}, // a one-year leaf with its hour of clock skew
		{10 * 365 * day, 90 * day},                  // a CA: never more than 90 days
		{365 * time.Second, 90 * time.Second},
		{73 * time.Second, 18 * time.Second},
	} {
		if got := RenewWindow(c.lifetime); got != c.want {
			t.Errorf("RenewWindow(%s) = %s, want %s", c.lifetime, got, c.want)
		}
	}
}

func TestNeedsRenewal(t *testing.T) {
	start := testTime()
	cert := &x509.Certificate{NotBefore: start, NotAfter: start.Add(DefaultLeafValidity)}
	renewAt := start.Add(DefaultLeafValidity - 90*24*time.Hour)
	if !RenewAt(cert).Equal(renewAt) {
		t.Fatalf("RenewAt = %s, want %s", RenewAt(cert), renewAt)
	}
	for _, c := range []struct {
		now  time.Time
		want bool
	}{
		{start, false},
		{renewAt.Add(-time.Second), false},
		{renewAt, true},
		{cert.NotAfter.Add(time.Hour), true}, // expired
	} {
		if got := NeedsRenewal(cert, c.now); got != c.want {
			t.Errorf("NeedsRenewal at %s = %v, want %v", c.now, got, c.want)
		}
	}
}

// TestGenerateShortValidity: with Validity a minute, leaves are issued for
// a minute (six seconds of clock skew), kept until their renewal window,
// then issued again with the same key, reporting why through OnIssue.
func TestGenerateShortValidity(t *testing.T) {
	cfg := testConfig(t)
	cfg.Validity = time.Minute
	var issued []string
	cfg.OnIssue = func(path, reason string) { issued = append(issued, filepath.Base(path)+": "+reason) }
	b := generate(t, cfg)
	if len(issued) != 15 || !strings.HasSuffix(issued[0], ": missing") {
		t.Fatalf("first Generate issued %v, want the 15 leaves as missing", issued)
	}
	cert := readCert(t, b.APIServerCert)
	if got := cert.NotAfter.Sub(cert.NotBefore); got != time.Minute+6*time.Second {
		t.Errorf("lifetime %s, want 1m6s (6 s of clock skew)", got)
	}
	if ca := readCert(t, b.ServerCA); ca.NotAfter.Sub(testTime()) < 9*365*24*time.Hour {
		t.Errorf("the CA follows Validity: not after %s", ca.NotAfter)
	}

	// 40 s later: the window (16 s before NotAfter) is not reached.
	issued = nil
	cfg.Now = clock(testTime().Add(40 * time.Second))
	generate(t, cfg)
	if len(issued) != 0 {
		t.Fatalf("at 40 s issued %v", issued)
	}
	// 45 s: in the window; every leaf again, same keys.
	before := snapshot(t, b.Dir)
	cfg.Now = clock(testTime().Add(45 * time.Second))
	generate(t, cfg)
	if len(issued) != 15 || !strings.Contains(issued[0], ": expires ") {
		t.Fatalf("at 45 s issued %v, want the 15 leaves as expiring", issued)
	}
	for _, rel := range changed(before, snapshot(t, b.Dir)) {
		if strings.HasSuffix(rel, ".key") {
			t.Errorf("renewal rewrote %s: a renewed leaf keeps its key", rel)
		}
	}
	if renewed := readCert(t, b.APIServerCert); !renewed.NotAfter.Equal(testTime().Add(45*time.Second + time.Minute)) {
		t.Errorf("renewed NotAfter %s", renewed.NotAfter)
	}
}

// TestGenerateRotate: a requested rotation issues only that service's
// leaves, with new keys; an unknown service is refused by name.
func TestGenerateRotate(t *testing.T) {
	cfg := testConfig(t)
	b := generate(t, cfg)
	before := snapshot(t, b.Dir)
	var reasons []string
	cfg.Rotate = []string{"etcd"}
	cfg.OnIssue = func(_, reason string) { reasons = append(reasons, reason) }
	generate(t, cfg)
	want := relPaths(t, b, b.EtcdClientCert, b.EtcdClientKey, b.EtcdPeerCert, b.EtcdPeerKey, b.EtcdServerCert, b.EtcdServerKey)
	if diff := changed(before, snapshot(t, b.Dir)); !slices.Equal(diff, want) {
		t.Errorf("rotate etcd changed %v, want %v", diff, want)
	}
	if len(reasons) != 3 || reasons[0] != "rotation requested" {
		t.Errorf("reasons %v", reasons)
	}
	cfg.Rotate = []string{"etcd", "api-server"}
	if _, err := Generate(cfg); err == nil || !strings.Contains(err.Error(), `"api-server"`) || !strings.Contains(err.Error(), "apiserver") {
		t.Errorf("unknown service: %v", err)
	}
}

// TestNodeDue checks a node's certificates the way an agent does, without
// the CA keys.
func TestNodeDue(t *testing.T) {
	ca := generate(t, testConfig(t))
	cfg := NodeConfig{Dir: t.TempDir(), NodeName: "w1", NodeIPs: []net.IP{net.ParseIP("192.0.2.7")}, Now: clock(testTime()), Validity: time.Minute}
	nb, err := IssueNode(ca, cfg)
	if err != nil {
		t.Fatal(err)
	}
	check := func(what string, c NodeConfig, want map[string]string) {
		t.Helper()
		due, err := NodeDue(nb, c)
		if err != nil {
			t.Fatal(err)
		}
		if len(due) != len(want) {
			t.Fatalf("%s: due %v, want %v", what, due, want)
		}
		for path, reason := range want {
			if !strings.HasPrefix(due[path], reason) {
				t.Errorf("%s: %s due %q, want %q", what, filepath.Base(path), due[path], reason)
			}
		}
	}
	check("fresh", cfg, nil)
	c := cfg
	c.NodeIPs = []net.IP{net.ParseIP("192.0.2.8")}
	check("new node IP", c, map[string]string{nb.KubeletServingCert: "SANs changed"})
	c = cfg
	c.Rotate = []string{"coredns"}
	check("rotate coredns", c, map[string]string{nb.CoreDNSCert: "rotation requested"})
	c = cfg
	c.Now = clock(testTime().Add(50 * time.Second))
	check("in the window", c, map[string]string{nb.KubeletClientCert: "expires", nb.KubeletServingCert: "expires", nb.KubeProxyCert: "expires", nb.CoreDNSCert: "expires"})
}
