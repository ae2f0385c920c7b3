// Package version holds kedge's version, stamped at build time by the
// Makefile from scripts/version.sh:
//
//	go build -ldflags "-X github.com/kedge-io/kedge/pkg/version.Version=v1.37.2+kedge1 -X github.com/kedge-io/kedge/pkg/version.Commit=0ea5c7a"
//
// A version is the embedded Kubernetes version plus kedge's build number
// (v1.37.2+kedge1, from the git tag of that name); a build between tags is
// v1.37.2+kedge1-3-g0ea5c7a, one before the first tag of its Kubernetes
// version v1.37.2+kedge0-0ea5c7a, and -dirty ends it when the work tree had
// changes.
package version

import (
	"runtime/debug"
	"strings"
)

// Version and Commit are set with -ldflags -X at build time. A binary built
// without them (a plain go build) reports Unstamped's version.
var (
	Version = Unstamped
	Commit  = ""
)

// Unstamped is Version's value when the build did not set it.
const Unstamped = "dev"

// Kubernetes is the version of the embedded Kubernetes components.
func Kubernetes() string {
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, d := range info.Deps {
			if d.Path == "k8s.io/kubernetes" {
				return d.Version
			}
		}
	}
	return "unknown"
}

// Get is kedge's version: Version as stamped, or for a plain go build
// v<kubernetes>+kedge0-<commit>[-dirty] from the VCS information Go records
// in the binary (just "dev" without it).
func Get() string {
	if Version != Unstamped {
		return Version
	}
	var settings []debug.BuildSetting
	if info, ok := debug.ReadBuildInfo(); ok {
		settings = info.Settings
	}
	return fromVCS(Kubernetes(), settings)
}

// fromVCS builds an unstamped binary's version from its build settings.
func fromVCS(kubernetes string, settings []debug.BuildSetting) string {
	var rev, dirty string
	for _, s := range settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	if rev == "" || !strings.HasPrefix(kubernetes, "v") {
		return Unstamped
	}
	return kubernetes + "+kedge0-" + rev[:min(len(rev), 7)] + dirty
}

// String is the one-line version shown by `kedge --version`:
// "v1.37.2+kedge1 (0ea5c7a) kubernetes v1.37.2".
func String() string {
	s := Get()
	if Commit != "" {
		s += " (" + Commit + ")"
	}
	return s + " kubernetes " + Kubernetes()
}
