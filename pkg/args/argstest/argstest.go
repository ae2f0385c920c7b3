// Package argstest checks the flags a component renders with pkg/args, for
// the components' table tests.
//
//	flags, err := Args(cfg)
//	argstest.Check(t, flags, err, map[string]string{"secure-port": "6443"}, nil)
package argstest

import (
	"strings"
	"testing"

	"github.com/kedge-io/kedge/pkg/args"
)

// Check fails t unless, with wantErr empty, err is nil and flags set every
// flag of want to its value; with wantErr, err must be an error whose text
// contains each of wantErr (the flag or value it names).
func Check(t *testing.T, flags []string, err error, want map[string]string, wantErr []string) {
	t.Helper()
	if len(wantErr) > 0 {
		if err == nil {
			t.Fatalf("no error; flags %q", flags)
		}
		for _, w := range wantErr {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error %q does not contain %q", err, w)
			}
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range want {
		if got, ok := args.Value(flags, k); !ok || got != v {
			t.Errorf("--%s = %q (present %v), want %q", k, got, ok, v)
		}
	}
}
