package embedded

import (
	"embed"
	"io/fs"
)

// packed is what scripts/build-helpers.sh wrote into packed/: the manifest,
// assets.tar.zst (bin/*, images/pause.tar) and stamps (what each asset was
// built from), or only .gitkeep in a plain `go build`. It is the package's
// one variable, read-only by construction.
//
//go:embed all:packed
var packed embed.FS

// AssetsFS returns the embedded packed asset tree: manifest,
// assets.tar.zst (runc, containerd-shim-runc-v2, CNI plugins,
// images/pause.tar) and stamps (what each asset was built from).
func AssetsFS() fs.FS {
	sub, err := fs.Sub(packed, "packed")
	if err != nil {
		panic("embedded: packed directory missing from embed.FS: " + err.Error()) // impossible: go:embed names it
	}
	return sub
}

// Extract writes the embedded helpers under <dataDir>/data/<hash>/ (see
// ExtractFS). It returns ErrNotBuilt if kedge was built without them.
func Extract(dataDir string) (Assets, error) {
	return ExtractFS(AssetsFS(), dataDir)
}

// Locate returns where Extract puts the embedded helpers under dataDir,
// without extracting them (see LocateFS).
func Locate(dataDir string) (Assets, error) {
	return LocateFS(AssetsFS(), dataDir)
}
