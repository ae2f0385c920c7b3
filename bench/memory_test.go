package bench

import (
	"io"
	"log/slog"
	"math"
	"reflect"
	"testing"
)

func TestMemoryRowsAdd(t *testing.T) {
	var r Results
	rows := ChurnMemoryRows(100)
	u := Usage{Procs: 101, Memory: Memory{RSS: 700 * mib, PSS: 650 * mib, PrivateDirty: 420 * mib, Anon: 400 * mib}}
	rows.Add(&r, "kedge", u, slog.New(slog.NewTextHandler(io.Discard, nil)), "test")
	got := map[string][]float64{}
	for _, row := range r.Rows() {
		got[row.Name] = row.Values["kedge"]
	}
	want := map[string][]float64{
		"with 100 pods Running: processes (shims included)": {101},
		"with 100 pods Running: RSS sum":                    {700},
		"with 100 pods Running: PSS sum":                    {650},
		"with 100 pods Running: anonymous (RssAnon) sum":    {400},
		"with 100 pods Running: Private_Dirty sum":          {420},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("rows %v, want %v", got, want)
	}
	if n := len(rows.Metrics()); n != 5 {
		t.Errorf("Metrics() has %d rows, want 5", n)
	}
	// The API part's sample has no PSS row (nor processes): not recorded.
	var lr Results
	LoadMemoryRows.Add(&lr, "kedge", u, slog.New(slog.NewTextHandler(io.Discard, nil)), "test")
	if n := len(lr.Rows()); n != 3 {
		t.Errorf("LoadMemoryRows recorded %d rows, want 3", n)
	}
	if n := len(LoadMemoryRows.Metrics()); n != 3 {
		t.Errorf("LoadMemoryRows has %d rows, want 3 (RSS, anonymous, Private_Dirty)", n)
	}
}

func TestPerPodAndPerMinute(t *testing.T) {
	if got := perPod(300*mib, 800*mib, 100); got != 5 {
		t.Errorf("perPod = %v, want 5 MiB", got)
	}
	if got := perPod(300*mib, 290*mib, 100); got != -0.1 {
		t.Errorf("perPod of a shrink = %v, want -0.1 MiB", got)
	}
	if got := PerMinute(100, 40); math.Abs(got-150) > 1e-9 {
		t.Errorf("PerMinute(100, 40 s) = %v, want 150", got)
	}
	if got := PerMinute(100, 0); got != 0 {
		t.Errorf("PerMinute(100, 0 s) = %v, want 0", got)
	}
}

func TestAddAddonCosts(t *testing.T) {
	var r Results
	u := func(rss, anon uint64) Usage { return Usage{Procs: 2, Memory: Memory{RSS: rss * mib, Anon: anon * mib}} }
	ref := u(300, 140)
	// servicelb 2 MiB, local-storage 1, metrics-server 9 (8 anonymous), network-policy 6 (-1: noise).
	without := []Usage{u(298, 139), u(299, 139), u(291, 132), u(294, 141)}
	if err := AddAddonCosts(&r, AddonAgent, "kedge", ref, without); err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{
		"add-on servicelb: agent idle RSS it adds": 2, "add-on servicelb: agent idle anonymous it adds": 1,
		"add-on local-storage: agent idle RSS it adds": 1, "add-on local-storage: agent idle anonymous it adds": 1,
		"add-on metrics-server: agent idle RSS it adds": 9, "add-on metrics-server: agent idle anonymous it adds": 8,
		"add-on network-policy: agent idle RSS it adds": 6, "add-on network-policy: agent idle anonymous it adds": -1,
		MetricAddonsRSS(AddonAgent).Name: 18, MetricAddonsAnon(AddonAgent).Name: 9,
	}
	var order []string
	for _, row := range r.Rows() {
		order = append(order, row.Name)
		if v := row.Values["kedge"]; len(v) != 1 || v[0] != want[row.Name] {
			t.Errorf("%s = %v, want %v", row.Name, v, want[row.Name])
		}
	}
	var declared []string
	for _, m := range AddonMetrics(AddonAgent) {
		declared = append(declared, m.Name)
	}
	if !reflect.DeepEqual(order, declared) || len(order) != len(want) {
		t.Errorf("rows %q, want the declared order %q", order, declared)
	}
	if err := AddAddonCosts(&r, AddonServer, "kedge", ref, without[:3]); err == nil {
		t.Error("3 samples for 4 add-ons accepted")
	}
}
