package embedded

// The versions of what scripts/build-helpers.sh builds into assets/. The
// script reads these constants (keep each on one line, `Name = "value"`),
// so they are the one place to bump a version.
const (
	// RuncVersion is the github.com/opencontainers/runc module version,
	// containerd v2.4.2 is tested with v1.5.2 (script/setup/runc-version);
	// v1.5.3 is its patch release. v1.6.0-rc.1 is held back: a release
	// candidate.
	RuncVersion = "v1.5.3"
	// CNIPluginsVersion is the github.com/containernetworking/plugins
	// module version of the bridge, host-local, loopback and portmap
	// plugins.
	CNIPluginsVersion = "v1.10.0"
	// PauseImage is the name and tag of the embedded pause image (built
	// from cmd/pause), to import from Assets.PauseImageTar and to set as
	// containerd's CRI sandbox image.
	PauseImage = "kedge.local/pause:1.0"
)

// containerd-shim-runc-v2 has no constant here: build-helpers.sh builds it
// from the github.com/containerd/containerd/v2 version in go.mod, the
// containerd kedge embeds.
