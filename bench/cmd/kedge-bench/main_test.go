package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/kedge-io/kedge/bench"
)

func TestParseFlagsParts(t *testing.T) {
	o, err := parseFlags(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"start", "idle", "api", "churn", "size", "agent", "addons"} {
		if !o.only[p] {
			t.Errorf("the default run lacks part %s", p)
		}
	}
	if o.addonRuns != 3 {
		t.Errorf("addons runs = %d, want 3 (a single run's differences are noise)", o.addonRuns)
	}
	if _, err := parseFlags([]string{"-addons-runs", "0"}); err == nil {
		t.Error("-addons-runs 0 accepted")
	}
	if o.plan.Churn.Replicas != 100 {
		t.Errorf("churn replicas = %d, want 100 (issue 16: 0 → 100 → 0)", o.plan.Churn.Replicas)
	}
	if o, err = parseFlags([]string{"-quick", "-only", "addons"}); err != nil {
		t.Fatal(err)
	}
	// The addons part keeps the settle time although the idle part is off.
	if o.addonRuns != 1 {
		t.Errorf("-quick: addons runs = %d, want 1", o.addonRuns)
	}
	if !o.only["addons"] || o.only["idle"] || o.plan.IdleBefore != 0 || o.idle == 0 || o.plan.Churn.Replicas != 0 {
		t.Errorf("-quick -only addons: only %v, idle %v / %v, replicas %d", o.only, o.plan.IdleBefore, o.idle, o.plan.Churn.Replicas)
	}
	if !slices.Equal(o.addonRoles, []bench.AddonRole{bench.AddonServer, bench.AddonAgent}) {
		t.Errorf("addons roles = %v, want server and agent", o.addonRoles)
	}
	if o, err = parseFlags([]string{"-addons-roles", "agent, agent"}); err != nil || !slices.Equal(o.addonRoles, []bench.AddonRole{bench.AddonAgent}) {
		t.Errorf("-addons-roles agent,agent: roles %v, err %v", o.addonRoles, err)
	}
	if _, err := parseFlags([]string{"-addons-roles", "node"}); err == nil || !strings.Contains(err.Error(), "-addons-roles") {
		t.Errorf("-addons-roles node: err = %v, want one naming the flag", err)
	}
	if _, err := parseFlags([]string{"-only", "addon"}); err == nil || !strings.Contains(err.Error(), "addons") {
		t.Errorf("-only addon: err = %v, want one naming the parts", err)
	}
}

func TestDeclareRowsAddons(t *testing.T) {
	o, err := parseFlags([]string{"-only", "addons"})
	if err != nil {
		t.Fatal(err)
	}
	var r bench.Results
	declareRows(&r, o)
	table := r.Table([2]string{"kedge", "baseline"})
	for _, m := range append(bench.AddonMetrics(bench.AddonServer), bench.AddonMetrics(bench.AddonAgent)...) {
		if !strings.Contains(table, "| "+m.Name+" | n/a (no add-ons) | n/a (no add-ons) |") {
			t.Errorf("table lacks the row %q:\n%s", m.Name, table)
		}
	}
	if strings.Contains(table, "exec →") {
		t.Errorf("-only addons declares the start rows:\n%s", table)
	}
}

func TestParseFlagsKedgeArgs(t *testing.T) {
	o, err := parseFlags([]string{"-kedge-arg=--disable=metrics-server", "-kedge-arg", "--disable=servicelb"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(o.kedgeArgs, []string{"--disable=metrics-server", "--disable=servicelb"}) {
		t.Errorf("kedge args %q", o.kedgeArgs)
	}
}

func TestAddonOrder(t *testing.T) {
	if got := AddonOrder(1, 5); !slices.Equal(got, []int{0, 1, 2, 3, 4}) {
		t.Errorf("run 1: %v", got)
	}
	if got := AddonOrder(3, 5); !slices.Equal(got, []int{2, 3, 4, 0, 1}) {
		t.Errorf("run 3: %v", got)
	}
	// Over n runs every sample takes every place once.
	for k := 0; k < 5; k++ {
		places := map[int]bool{}
		for run := 1; run <= 5; run++ {
			places[slices.Index(AddonOrder(run, 5), k)] = true
		}
		if len(places) != 5 {
			t.Errorf("sample %d takes places %v in 5 runs", k, places)
		}
	}
}
