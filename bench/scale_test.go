package bench

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

func TestSlope(t *testing.T) {
	// RSS 300, 340, 420 MiB at 0, 1k, 3k pods: 40 MiB per 1k pods.
	if got := Slope([]float64{0, 1, 3}, []float64{300, 340, 420}); math.Abs(got-40) > 1e-9 {
		t.Errorf("slope = %v, want 40", got)
	}
	if got := Slope([]float64{3, 10}, []float64{420, 700}); math.Abs(got-40) > 1e-9 {
		t.Errorf("two-point slope = %v, want 40", got)
	}
	for _, tc := range [][2][]float64{{{1}, {2}}, {{1, 1}, {2, 3}}, {{1, 2}, {2}}} {
		if got := Slope(tc[0], tc[1]); got != 0 {
			t.Errorf("Slope(%v, %v) = %v, want 0 (undefined)", tc[0], tc[1], got)
		}
	}
}

func TestParseRSSAnon(t *testing.T) {
	status := "Name:\tkedge\nVmRSS:\t  300000 kB\nRssAnon:\t  123456 kB\nRssFile:\t  176544 kB\n"
	got, err := ParseRSSAnon(status)
	if err != nil || got != 123456*1024 {
		t.Fatalf("ParseRSSAnon = %d, %v; want %d", got, err, 123456*1024)
	}
	for _, bad := range []string{"Name:\tx\n", "RssAnon:\t12 MB\n", "RssAnon:\tx kB\n"} {
		if _, err := ParseRSSAnon(bad); err == nil {
			t.Errorf("ParseRSSAnon(%q): no error", bad)
		}
	}
}

func TestRSSAnonSkipsExited(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "7"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "7", "status"), []byte("RssAnon:\t10 kB\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := ProcFS{Root: root}.RSSAnon([]int{7, 8})
	if err != nil || got != 10*1024 {
		t.Fatalf("RSSAnon = %d, %v; want 10240 (pid 8 gone)", got, err)
	}
}

func TestEtcdDBSize(t *testing.T) {
	dir := t.TempDir()
	if _, err := EtcdDBSize(dir); err == nil {
		t.Error("no db: no error")
	}
	db := filepath.Join(dir, "data", "server", "db", "etcd", "member", "snap", "db")
	if err := os.MkdirAll(filepath.Dir(db), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(db, make([]byte, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := EtcdDBSize(dir); err != nil || got != 4096 {
		t.Errorf("EtcdDBSize = %d, %v; want 4096", got, err)
	}
}

func TestFakeObjects(t *testing.T) {
	n := FakeNode("kwok-0001")
	if n.Annotations[KwokNodeAnnotation] != KwokNodeValue || len(n.Spec.Taints) != 1 {
		t.Errorf("node %s: not marked for kwok: %v %v", n.Name, n.Annotations, n.Spec.Taints)
	}
	if q := n.Status.Allocatable[corev1.ResourcePods]; q.Value() != 110 {
		t.Errorf("node allocatable pods = %v, want 110", q.String())
	}
	p := FakePod("scale-00001")
	if p.Spec.NodeSelector[KwokNodeLabel] != n.Labels[KwokNodeLabel] {
		t.Errorf("pod nodeSelector %v does not select the fake node's labels %v", p.Spec.NodeSelector, n.Labels)
	}
	if tol, taint := p.Spec.Tolerations[0], n.Spec.Taints[0]; tol.Key != taint.Key || tol.Operator != corev1.TolerationOpExists || tol.Effect != taint.Effect {
		t.Errorf("pod does not tolerate the fake node's taint")
	}
}

func TestScaleMetricsAndGroups(t *testing.T) {
	steps := []ScaleStep{{100, 0}, {100, 1000}, {100, 3000}, {500, 10000}}
	names := map[string]bool{}
	for _, m := range ScaleMetrics(steps) {
		if names[m.Name] {
			t.Errorf("duplicate row %q", m.Name)
		}
		names[m.Name] = true
	}
	for _, want := range []string{
		"scale 100 nodes + 0 pods: RSS sum",
		"scale 100 nodes + 3000 pods: RssAnon sum",
		"scale 100 nodes, pods 0 → 3000: scheduled/s",
		"scale 100 nodes, pods 1000 → 3000: time to all scheduled",
		"scale 500 nodes + 10000 pods: LIST all pods p99",
		"scale RSS slope 0 → 3000 pods (100 → 100 nodes), per 1k pods",
		"scale RssAnon slope 3000 → 10000 pods (100 → 500 nodes), per 1k pods",
		"scale 500 nodes + 10000 pods: etcd db size",
	} {
		if !names[want] {
			t.Errorf("no row %q", want)
		}
	}
	// What RunScale adds must be the rows ScaleMetrics declares.
	var r Results
	results := []stepResult{
		{rss: 300, anon: 100},
		{rss: 340, anon: 130, sched: 20 * time.Second, pods: 1000},
		{rss: 420, anon: 190, sched: 40 * time.Second, pods: 2000},
		{rss: 700, anon: 400, sched: 140 * time.Second, pods: 7000},
	}
	addGroups(steps, results, "kedge", &r)
	for _, row := range r.Rows() {
		if !names[row.Name] {
			t.Errorf("addGroups added undeclared row %q", row.Name)
		}
		if strings.Contains(row.Name, "pods 0 → 3000: scheduled/s") && row.Values["kedge"][0] != 50 {
			t.Errorf("0 → 3000 rate = %v, want 3000 pods / 60 s = 50", row.Values["kedge"])
		}
		if row.Name == "scale RSS slope 0 → 3000 pods (100 → 100 nodes), per 1k pods" && math.Abs(row.Values["kedge"][0]-40) > 1e-9 {
			t.Errorf("RSS slope = %v, want 40", row.Values["kedge"])
		}
	}
	if len(r.Rows()) != 5 {
		t.Errorf("addGroups added %d rows, want 5 (2 slopes × 2 groups + the first group's rate)", len(r.Rows()))
	}
}
