package embedded

import (
	"embed"
	"io/fs"
)

// assets is what scripts/build-helpers.sh wrote into assets/: bin/*,
// images/pause.tar and build stamps, or only .gitkeep in a plain `go build`.
// It is the package's one variable, read-only by construction.
//
//go:embed all:assets
var assets embed.FS

// AssetsFS returns the embedded asset tree: bin/ (runc,
// containerd-shim-runc-v2, CNI plugins), images/pause.tar, and stamps/
// (what each asset was built from).
func AssetsFS() fs.FS {
	sub, err := fs.Sub(assets, "assets")
	if err != nil {
		panic("embedded: assets directory missing from embed.FS: " + err.Error()) // impossible: go:embed names it
	}
	return sub
}

// Extract writes the embedded helpers under <dataDir>/data/<hash>/ (see
// ExtractFS). It returns ErrNotBuilt if kedge was built without them.
func Extract(dataDir string) (Assets, error) {
	return ExtractFS(AssetsFS(), dataDir)
}
