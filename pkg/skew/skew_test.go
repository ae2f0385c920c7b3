package skew

import (
	"strings"
	"testing"
)

func TestCheckServer(t *testing.T) {
	for _, tc := range []struct {
		name, v   string
		node      string // the server's own name; "x" if empty
		servers   map[string]string
		datastore string
		want      string // substring of the error; "" for none
	}{
		{"first server", "v1.36.4", "", nil, "", ""},
		{"same minor", "v1.36.4", "", map[string]string{"a": "v1.36.1", "b": "v1.36.4"}, "v1.36.4", ""},
		{"one minor newer (rolling upgrade)", "v1.37.2", "", map[string]string{"a": "v1.36.4", "b": "v1.36.4"}, "v1.36.4", ""},
		{"one minor older, datastore not yet moved", "v1.36.4", "", map[string]string{"a": "v1.37.2"}, "v1.36.4", ""},
		{"own record ignored", "v1.37.2", "c", map[string]string{"c": "v1.36.4", "a": "v1.37.2"}, "v1.37.2", ""},
		{"another server's record counts", "v1.38.0", "c", map[string]string{"c": "v1.37.2", "a": "v1.36.4"}, "v1.37.2", "server a runs v1.36.4"},
		{"two minors newer", "v1.38.0", "", map[string]string{"a": "v1.36.4"}, "v1.36.4", "server x runs Kubernetes v1.38.0 and server a runs v1.36.4"},
		{"two minors older", "v1.36.4", "", map[string]string{"a": "v1.38.1"}, "", "at most 1 minor"},
		{"datastore downgrade", "v1.36.4", "", map[string]string{"a": "v1.37.2"}, "v1.37.2", "downgrade is refused"},
		{"patch older than datastore is fine", "v1.37.0", "", nil, "v1.37.2", ""},
		{"unreadable record ignored", "v1.36.4", "", map[string]string{"a": "garbage"}, "garbage", ""},
		{"pre-release", "v1.37.0-rc.1", "", map[string]string{"a": "v1.36.4"}, "v1.36.4", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := tc.node
			if name == "" {
				name = "x"
			}
			err := CheckServer(name, tc.v, tc.servers, tc.datastore)
			check(t, err, tc.want)
		})
	}
	if err := CheckServer("x", "unknown", nil, ""); err == nil || !strings.Contains(err.Error(), `bad Kubernetes version "unknown"`) {
		t.Errorf("unknown version: %v", err)
	}
}

func TestCheckAgent(t *testing.T) {
	servers := map[string]string{"a": "v1.36.4", "b": "v1.37.2", "c": "v1.37.1"}
	for _, tc := range []struct {
		v, want, warning string
		servers          map[string]string
	}{
		{v: "v1.37.2", warning: "newer than server a (v1.36.4)", servers: servers},
		{v: "v1.36.0", servers: servers},
		{v: "v1.38.0", want: "agent w runs Kubernetes v1.38.0, newer than every server (the newest, b, runs v1.37.2)", servers: servers},
		{v: "v1.33.9", servers: servers},
		{v: "v1.32.0", want: "more than 3 minor versions older than server a (v1.36.4)", servers: servers},
		{v: "v1.40.0"}, // no server recorded yet: nothing to compare
	} {
		warning, err := CheckAgent("w", tc.v, tc.servers)
		check(t, err, tc.want)
		if (tc.warning == "") != (warning == "") || !strings.Contains(warning, tc.warning) {
			t.Errorf("%s: warning %q, want %q", tc.v, warning, tc.warning)
		}
	}
}

func TestCheckDataDir(t *testing.T) {
	for _, tc := range []struct{ prev, v, want string }{
		{"", "v1.36.4", ""},
		{"v1.36.4", "v1.36.4", ""},
		{"v1.36.4", "v1.36.1", ""},
		{"v1.36.4", "v1.37.2", ""},
		{"v1.37.2", "v1.36.4", "/d was last used by Kubernetes v1.37.2 and this kedge runs v1.36.4: a downgrade of the datastore is refused"},
		{"v1.36.4", "v1.38.0", "upgrade one minor version at a time (first a 1.37 kedge)"},
		{"junk", "v1.36.4", ""},
	} {
		check(t, CheckDataDir("/d", tc.prev, tc.v), tc.want)
	}
}

func TestNewer(t *testing.T) {
	for _, tc := range []struct{ a, b, want string }{
		{"v1.36.4", "", "v1.36.4"},
		{"v1.36.4", "v1.37.0", "v1.37.0"},
		{"v1.37.0", "v1.36.4", "v1.37.0"},
		{"v1.37.2", "v1.37.0", "v1.37.2"},
		{"bad", "v1.36.4", "v1.36.4"},
	} {
		if got := Newer(tc.a, tc.b); got != tc.want {
			t.Errorf("Newer(%q, %q) = %q, want %q", tc.a, tc.b, got, tc.want)
		}
	}
}

func check(t *testing.T, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Errorf("unexpected error: %v", err)
	case want != "" && err == nil:
		t.Errorf("no error, want one containing %q", want)
	case want != "" && !strings.Contains(err.Error(), want):
		t.Errorf("error %q, want one containing %q", err, want)
	}
}
