package cli

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/pflag"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/component-base/featuregate"
	"k8s.io/klog/v2"
)

// featureGates is the value of --feature-gates: the Kubernetes feature gates
// of the whole process. kedge runs the apiserver, controller-manager,
// scheduler, kubelet and kube-proxy in one process, and every one of them
// reads the same gate (utilfeature.DefaultFeatureGate): a gate set for one
// component is set for all. So the gates are typed once, here, and applied
// once, before any component starts; a component's own feature-gates flag
// (--kubelet-arg=feature-gates=…) may only repeat them.
//
// The flag is repeatable and takes comma-separated Name=true|false pairs; in
// a config file it is a string or a list of them. Every name must be a gate
// this kedge knows, and a gate locked to its default cannot be changed.
type featureGates map[string]bool

var (
	_ pflag.Value      = (*featureGates)(nil)
	_ pflag.SliceValue = (*featureGates)(nil)
)

// featureGatesUsage is the help text of --feature-gates.
const featureGatesUsage = "Kubernetes feature gates as Name=true|false pairs, comma-separated (repeatable): one gate for the whole process, read by the apiserver, controller-manager, scheduler, kubelet and kube-proxy alike; a component's own feature-gates (--kubelet-arg=feature-gates=…) may only repeat it"

// String returns the gates as sorted Name=bool pairs.
func (g *featureGates) String() string { return strings.Join(g.GetSlice(), ",") }

// Type implements pflag.Value.
func (*featureGates) Type() string { return "mapStringBool" }

// Set adds the Name=bool pairs of s.
func (g *featureGates) Set(s string) error { return g.Append(s) }

// Append adds the Name=bool pairs of s (pflag.SliceValue).
func (g *featureGates) Append(s string) error {
	next := maps.Clone(*g)
	if next == nil {
		next = featureGates{}
	}
	pairs, err := parseGatePairs(s)
	if err != nil {
		return err
	}
	for _, p := range pairs {
		next[p.name] = p.value
	}
	if _, err := processGateWith(next); err != nil {
		return err
	}
	*g = next
	return nil
}

// Replace sets the gates to those of items (pflag.SliceValue: a config
// file's list).
func (g *featureGates) Replace(items []string) error {
	var next featureGates
	for _, s := range items {
		if err := next.Append(s); err != nil {
			return err
		}
	}
	*g = next
	return nil
}

// GetSlice returns the gates as sorted Name=bool pairs (pflag.SliceValue).
func (g *featureGates) GetSlice() []string {
	out := make([]string, 0, len(*g))
	for _, name := range slices.Sorted(maps.Keys(*g)) {
		out = append(out, name+"="+strconv.FormatBool((*g)[name]))
	}
	return out
}

// apply sets the gates on the process-wide gate. kedge calls it once,
// before any component starts.
func (g featureGates) apply() error {
	if err := utilfeature.DefaultMutableFeatureGate.SetFromMap(g); err != nil {
		return fmt.Errorf("--feature-gates: %w", err)
	}
	return nil
}

// processGateWith returns a copy of the process-wide gate with g set: the
// names and values it accepts. The copy logs nothing (apply warns once, for
// example about setting a GA gate).
func processGateWith(g featureGates) (featuregate.MutableVersionedFeatureGate, error) {
	gate := utilfeature.DefaultMutableFeatureGate.DeepCopy()
	var err error
	if quiet, ok := gate.(featuregate.MutableFeatureGateWithLogger); ok {
		err = quiet.SetFromMapWithLogger(klog.Logger{}, g)
	} else {
		err = gate.SetFromMap(g)
	}
	return gate, err
}

type gatePair struct {
	name  string
	value bool
}

// parseGatePairs parses "A=true,B=false". A "kube:" prefix, which the
// control plane's flag accepts, is dropped.
func parseGatePairs(s string) ([]gatePair, error) {
	var out []gatePair
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, value, ok := strings.Cut(item, "=")
		name = strings.TrimPrefix(strings.TrimSpace(name), "kube:")
		b, err := strconv.ParseBool(strings.TrimSpace(value))
		if !ok || name == "" || err != nil {
			return nil, fmt.Errorf("%q: want Name=true or Name=false", item)
		}
		out = append(out, gatePair{name, b})
	}
	return out, nil
}

// checkComponentGates refuses a component's feature-gates (a key of one of
// the --*-arg flags) that contradicts the process-wide gate: the gate as
// --feature-gates sets it, or a gate's default where --feature-gates does
// not name it. Repeating the process-wide value is accepted. flags maps a
// kedge flag (--kubelet-arg) to its key=value values.
func (g featureGates) checkComponentGates(flags map[string][]string) error {
	gate, err := processGateWith(g)
	if err != nil {
		return fmt.Errorf("--feature-gates: %w", err)
	}
	known := gate.GetAll()
	for _, flag := range slices.Sorted(maps.Keys(flags)) {
		for _, kv := range flags[flag] {
			key, value, _ := strings.Cut(kv, "=")
			key = strings.TrimPrefix(strings.TrimLeft(strings.TrimSpace(key), "-"), "+")
			if strings.ReplaceAll(key, "_", "-") != "feature-gates" {
				continue
			}
			pairs, err := parseGatePairs(value)
			if err != nil {
				return fmt.Errorf("%s %s: %w", flag, kv, err)
			}
			for _, p := range pairs {
				if _, ok := known[featuregate.Feature(p.name)]; !ok {
					return fmt.Errorf("%s %s: unrecognized feature gate %s", flag, kv, p.name)
				}
				have := gate.Enabled(featuregate.Feature(p.name))
				if have == p.value {
					continue
				}
				source := "its default; --feature-gates does not set it"
				if _, ok := g[p.name]; ok {
					source = fmt.Sprintf("--feature-gates=%s=%t", p.name, have)
				}
				return fmt.Errorf("%s %s contradicts --feature-gates: %s is %t for the whole process (%s). "+
					"kedge runs the control plane, the kubelet and kube-proxy in one process, which has one feature gate: "+
					"set --feature-gates=%s=%t instead, for every component at once",
					flag, kv, p.name, have, source, p.name, p.value)
			}
		}
	}
	return nil
}
