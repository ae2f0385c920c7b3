// Package args renders the command-line arguments kedge passes to an
// embedded upstream component: kedge's defaults, overridden or extended by
// the user's --kube-*-arg values.
//
//	flags, err := args.Render(
//		map[string]string{"secure-port": "6443", "profiling": "false"},
//		[]string{"profiling=true", "-v=2"},
//		"--kube-apiserver-arg")
//	// flags == ["--profiling=true", "--secure-port=6443", "--v=2"]
package args

import (
	"fmt"
	"sort"
	"strings"
)

// Render merges defaults with the user's key=value overrides and returns
// "--key=value" flags sorted by key. A user value replaces the default of the
// same key; a key prefixed with "+" (e.g. "+feature-gates=X=true") appends to
// the default with a comma instead. A user key that appears more than once
// produces one flag per value (for repeatable upstream flags). flagName names
// the kedge flag the overrides came from, for errors.
func Render(defaults map[string]string, user []string, flagName string) ([]string, error) {
	merged := make(map[string][]string, len(defaults)+len(user))
	for k, v := range defaults {
		merged[k] = []string{v}
	}
	seen := map[string]bool{}
	for _, kv := range user {
		key, value, ok := strings.Cut(kv, "=")
		key = strings.TrimLeft(strings.TrimSpace(key), "-")
		appendMode := strings.HasPrefix(key, "+")
		key = strings.TrimPrefix(key, "+")
		if !ok || key == "" {
			return nil, fmt.Errorf("%s %q: want key=value", flagName, kv)
		}
		switch {
		case appendMode && len(merged[key]) > 0:
			last := len(merged[key]) - 1
			merged[key][last] += "," + value
		case seen[key]:
			merged[key] = append(merged[key], value)
		default:
			merged[key] = []string{value}
		}
		seen[key] = true
	}
	keys := make([]string, 0, len(merged))
	for k := range merged {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		for _, v := range merged[k] {
			out = append(out, "--"+k+"="+v)
		}
	}
	return out, nil
}

// Value returns the value of the last "--key=value" in flags, and whether it
// was present. Components use it to read back a rendered setting.
func Value(flags []string, key string) (string, bool) {
	prefix := "--" + key + "="
	for i := len(flags) - 1; i >= 0; i-- {
		if v, ok := strings.CutPrefix(flags[i], prefix); ok {
			return v, true
		}
	}
	return "", false
}
