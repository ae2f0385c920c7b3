package version

import (
	"runtime/debug"
	"strings"
	"testing"
)

func TestFromVCS(t *testing.T) {
	rev := debug.BuildSetting{Key: "vcs.revision", Value: "0ea5c7a1b2c3d4e5f60718293a4b5c6d7e8f9012"}
	for _, tc := range []struct {
		name     string
		settings []debug.BuildSetting
		want     string
	}{
		{"clean", []debug.BuildSetting{rev, {Key: "vcs.modified", Value: "false"}}, "v1.36.4+kedge0-0ea5c7a"},
		{"dirty", []debug.BuildSetting{rev, {Key: "vcs.modified", Value: "true"}}, "v1.36.4+kedge0-0ea5c7a-dirty"},
		{"no vcs", nil, Unstamped},
	} {
		if got := fromVCS("v1.36.4", tc.settings); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
	if got := fromVCS("unknown", []debug.BuildSetting{rev}); got != Unstamped {
		t.Errorf("without the Kubernetes version: %q, want %q", got, Unstamped)
	}
}

func TestStamped(t *testing.T) {
	defer func(v, c string) { Version, Commit = v, c }(Version, Commit)
	Version, Commit = "v1.36.4+kedge1", "0ea5c7a"
	if got := Get(); got != "v1.36.4+kedge1" {
		t.Errorf("Get() = %q", got)
	}
	if got, want := String(), "v1.36.4+kedge1 (0ea5c7a) kubernetes "; !strings.HasPrefix(got, want) {
		t.Errorf("String() = %q, want it to start with %q", got, want)
	}
}
