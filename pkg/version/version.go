// Package version holds kedge's version, stamped at build time:
//
//	go build -ldflags "-X github.com/kedge-io/kedge/pkg/version.Version=v0.1.0 -X github.com/kedge-io/kedge/pkg/version.Commit=abc123"
package version

import "runtime/debug"

// Version and Commit are set with -ldflags -X at build time.
var (
	Version = "dev"
	Commit  = ""
)

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

// String is the one-line version shown by `kedge --version`.
func String() string {
	s := Version
	if Commit != "" {
		s += " (" + Commit + ")"
	}
	return s + " kubernetes " + Kubernetes()
}
