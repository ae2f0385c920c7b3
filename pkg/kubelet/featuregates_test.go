package kubelet

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/component-base/featuregate"
)

// TestRenderFeatureGatesFollowTheProcess: the kubelet runs with the
// process-wide gate (set by kedge's --feature-gates) and never sets its own:
// feature gates of --kubelet-arg or a config file that differ from it are
// refused, and Render leaves the process gate alone.
func TestRenderFeatureGatesFollowTheProcess(t *testing.T) {
	var alpha []string
	for name, spec := range utilfeature.DefaultMutableFeatureGate.GetAll() {
		if spec.PreRelease == featuregate.Alpha && !spec.Default && !spec.LockToDefault {
			alpha = append(alpha, string(name))
		}
	}
	if len(alpha) == 0 {
		t.Fatal("no alpha feature gate")
	}
	slices.Sort(alpha)
	gate := alpha[0]

	cfg := baseConfig()
	cfg.ExtraArgs = []string{"feature-gates=" + gate + "=false"}
	if _, err := Render(cfg); err != nil {
		t.Fatalf("a gate at the process's value: %v", err)
	}
	cfg.ExtraArgs = []string{"feature-gates=" + gate + "=true"}
	_, err := Render(cfg)
	for _, want := range []string{"--kubelet-arg", gate + "=true", "process-wide", "--feature-gates"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("a gate the process does not have: err = %v, want one containing %q", err, want)
		}
	}
	if utilfeature.DefaultFeatureGate.Enabled(featuregate.Feature(gate)) {
		t.Fatalf("Render turned %s on in the process", gate)
	}
	file := filepath.Join(t.TempDir(), "kubelet.yaml")
	body := "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nfeatureGates:\n  " + gate + ": true\n"
	if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.ExtraArgs = []string{"config=" + file}
	if _, err := Render(cfg); err == nil || !strings.Contains(err.Error(), "process-wide") {
		t.Fatalf("a config file's gate the process does not have: err = %v", err)
	}

	// Once the process has it (kedge --feature-gates), the same settings pass.
	if err := utilfeature.DefaultMutableFeatureGate.SetFromMap(map[string]bool{gate: true}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = utilfeature.DefaultMutableFeatureGate.SetFromMap(map[string]bool{gate: false}) })
	for _, extra := range []string{"feature-gates=" + gate + "=true", "config=" + file} {
		cfg.ExtraArgs = []string{extra}
		if _, err := Render(cfg); err != nil {
			t.Errorf("%s with the process gate on: %v", extra, err)
		}
	}
}
