package cli

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/pflag"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/component-base/featuregate"
)

// alphaGates returns the names of n feature gates that are off by default
// and may be turned on alone (alpha, not locked, depending on no other gate,
// not the AllAlpha/AllBeta toggles), sorted: test subjects that do not
// depend on this Kubernetes version's list. (Since 1.37 a gate turned on
// without the gates it depends on is refused, and AllAlpha=true turns on
// alpha gates that depend on beta gates that are off.)
func alphaGates(t *testing.T, n int) []string {
	t.Helper()
	var names []string
	deps := utilfeature.DefaultMutableFeatureGate.Dependencies()
	for name, spec := range utilfeature.DefaultMutableFeatureGate.GetAll() {
		if name == "AllAlpha" || name == "AllBeta" || len(deps[name]) > 0 {
			continue
		}
		if spec.PreRelease == featuregate.Alpha && !spec.Default && !spec.LockToDefault {
			names = append(names, string(name))
		}
	}
	slices.Sort(names)
	if len(names) < n {
		t.Fatalf("only %d alpha feature gates", len(names))
	}
	return names[:n]
}

func TestFeatureGatesFlag(t *testing.T) {
	g := alphaGates(t, 3)
	var gates featureGates
	fs := pflag.NewFlagSet("server", pflag.ContinueOnError)
	fs.Var(&gates, "feature-gates", featureGatesUsage)
	if err := fs.Parse([]string{"--feature-gates", g[0] + "=true," + g[1] + "=false", "--feature-gates=" + g[2] + "=true"}); err != nil {
		t.Fatal(err)
	}
	want := featureGates{g[0]: true, g[1]: false, g[2]: true}
	if !equalGates(gates, want) {
		t.Fatalf("gates = %v, want %v (repeated flags add up)", gates, want)
	}
	if s := gates.String(); s != g[0]+"=true,"+g[1]+"=false,"+g[2]+"=true" {
		t.Errorf("String() = %q", s)
	}
	for _, bad := range []string{"NoSuchGate=true", g[0] + "=maybe", g[0], "=true"} {
		var gates featureGates
		fs := pflag.NewFlagSet("server", pflag.ContinueOnError)
		fs.Var(&gates, "feature-gates", featureGatesUsage)
		err := fs.Parse([]string{"--feature-gates=" + bad})
		if err == nil || !strings.Contains(err.Error(), "--feature-gates") {
			t.Errorf("--feature-gates=%s: err = %v, want one naming --feature-gates", bad, err)
		}
	}
}

// TestFeatureGatesConfigFile: a config file gives them as a string or a
// list; the command line wins.
func TestFeatureGatesConfigFile(t *testing.T) {
	g := alphaGates(t, 2)
	for _, tc := range []struct {
		yaml    string
		cmdline []string
		want    featureGates
	}{
		{"feature-gates: " + g[0] + "=true," + g[1] + "=true\n", nil, featureGates{g[0]: true, g[1]: true}},
		{"feature-gates:\n  - " + g[0] + "=true\n  - " + g[1] + "=false\n", nil, featureGates{g[0]: true, g[1]: false}},
		{"feature-gates: [" + g[0] + "=true]\n", []string{"--feature-gates=" + g[1] + "=true"}, featureGates{g[1]: true}},
	} {
		path := filepath.Join(t.TempDir(), "config.yaml")
		if err := os.WriteFile(path, []byte(tc.yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		f := &serverFlags{}
		fs := pflag.NewFlagSet("server", pflag.ContinueOnError)
		f.register(fs)
		if err := fs.Parse(tc.cmdline); err != nil {
			t.Fatal(err)
		}
		if err := applyConfigFile(fs, path, true); err != nil {
			t.Fatalf("%q: %v", tc.yaml, err)
		}
		if !equalGates(f.featureGates, tc.want) {
			t.Errorf("%q %v: gates = %v, want %v", tc.yaml, tc.cmdline, f.featureGates, tc.want)
		}
	}
}

// TestComponentFeatureGates: a component's feature-gates may repeat
// --feature-gates (or a default) but not contradict it, on either role.
func TestComponentFeatureGates(t *testing.T) {
	g := alphaGates(t, 2)
	on, off := g[0], g[1] // --feature-gates turns on on; off stays at its default, false
	agent := []string{"--server=https://10.0.0.1:6443", "--token=s3cret", "--node-ip=192.0.2.9", "--node-name=w1"}
	cases := []struct {
		name    string
		agent   bool
		cmdline []string
		want    []string // substrings of the error; none: accepted
	}{
		{"kubelet repeats --feature-gates", false, []string{"--kubelet-arg=feature-gates=" + on + "=true"}, nil},
		{"kubelet repeats a default", false, []string{"--kubelet-arg=feature-gates=" + off + "=false"}, nil},
		{"kubelet contradicts --feature-gates", false, []string{"--kubelet-arg=feature-gates=" + on + "=false"},
			[]string{"--kubelet-arg feature-gates=" + on + "=false", "contradicts --feature-gates", "--feature-gates=" + on + "=true", "one process"}},
		{"kubelet changes a default", false, []string{"--kubelet-arg=+feature-gates=" + off + "=true"},
			[]string{"--kubelet-arg", "contradicts --feature-gates", "its default", "set --feature-gates=" + off + "=true instead"}},
		{"kube-proxy on an agent", true, []string{"--kube-proxy-arg=feature_gates=" + off + "=true"}, []string{"--kube-proxy-arg", "--feature-gates"}},
		{"kubelet on an agent", true, []string{"--kubelet-arg=feature-gates=" + on + "=false"}, []string{"--kubelet-arg", "--feature-gates"}},
		{"agent repeats", true, []string{"--kubelet-arg=feature-gates=" + on + "=true", "--kube-proxy-arg=feature-gates=" + on + "=true," + off + "=false"}, nil},
		{"apiserver with the kube: prefix", false, []string{"--kube-apiserver-arg=feature-gates=kube:" + on + "=false"}, []string{"--kube-apiserver-arg", "--feature-gates"}},
		{"controller-manager", false, []string{"--kube-controller-manager-arg=feature-gates=" + off + "=true"}, []string{"--kube-controller-manager-arg", "--feature-gates"}},
		{"scheduler repeats", false, []string{"--kube-scheduler-arg=feature-gates=" + on + "=true"}, nil},
		{"unknown gate", false, []string{"--kubelet-arg=feature-gates=NoSuchGate=true"}, []string{"--kubelet-arg", "NoSuchGate"}},
		{"malformed", false, []string{"--kubelet-arg=feature-gates=" + on}, []string{"--kubelet-arg", "Name=true"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cmdline := append([]string{"--feature-gates=" + on + "=true"}, tc.cmdline...)
			var err error
			if tc.agent {
				f := &agentFlags{}
				fs := pflag.NewFlagSet("agent", pflag.ContinueOnError)
				f.register(fs)
				if err := fs.Parse(append(agent, cmdline...)); err != nil {
					t.Fatal(err)
				}
				_, err = f.agentConfig()
			} else {
				f, _ := parseServerFlags(t, append([]string{"--node-ip=192.0.2.10", "--node-name=node-1"}, cmdline...)...)
				_, err = f.serverConfig(testExec)
			}
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted, want an error naming %s", tc.want[0])
			}
			if !strings.HasPrefix(err.Error(), strings.Fields(tc.want[0])[0]) {
				t.Errorf("error %q does not start with the flag", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// TestFeatureGatesApply: apply sets the process-wide gate, which every
// component reads.
func TestFeatureGatesApply(t *testing.T) {
	name := alphaGates(t, 1)[0]
	t.Cleanup(func() { _ = utilfeature.DefaultMutableFeatureGate.SetFromMap(map[string]bool{name: false}) })
	if err := (featureGates{name: true}).apply(); err != nil {
		t.Fatal(err)
	}
	if !utilfeature.DefaultFeatureGate.Enabled(featuregate.Feature(name)) {
		t.Fatalf("%s is off after apply", name)
	}
}

func equalGates(a, b featureGates) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
