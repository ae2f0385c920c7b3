package embedded

import (
	"embed"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// assets is what scripts/build-helpers.sh wrote into assets/: bin/*,
// images/pause.tar and build stamps, or only .gitkeep in a plain `go build`.
// It is the package's one variable, read-only by construction.
//
//go:embed all:assets
var assets embed.FS

// AssetsFS returns the embedded asset tree: bin/ (runc, CNI plugins),
// images/pause.tar, and stamps/ (what each asset was built from).
func AssetsFS() fs.FS {
	sub, err := fs.Sub(assets, "assets")
	if err != nil {
		panic("embedded: assets directory missing from embed.FS: " + err.Error()) // impossible: go:embed names it
	}
	return sub
}

// Extract writes the embedded helpers under <dataDir>/data/<hash>/ (see
// ExtractFS) and links BinDir/containerd-shim-runc-v2 to the running kedge
// executable. It returns ErrNotBuilt if kedge was built without them.
func Extract(dataDir string) (Assets, error) {
	self, err := os.Executable()
	if err != nil {
		return Assets{}, fmt.Errorf("embedded: locate the kedge executable: %w", err)
	}
	if self, err = filepath.EvalSymlinks(self); err != nil {
		return Assets{}, fmt.Errorf("embedded: locate the kedge executable: %w", err)
	}
	return ExtractFS(AssetsFS(), dataDir, self)
}
