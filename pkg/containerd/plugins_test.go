package containerd

import (
	"go/build"
	"go/parser"
	"go/token"
	"slices"
	"strconv"
	"testing"
)

// builtinsPkg is containerd's own plugin list, which plugins.go follows.
const builtinsPkg = "github.com/containerd/containerd/v2/cmd/containerd/builtins"

// leftOut are the imports of builtinsPkg that plugins.go leaves out, each
// with a plugin URI it registers: DisabledPlugins must disable that URI, so
// that leaving the package out changes nothing a node runs.
var leftOut = map[string]string{
	"github.com/containerd/containerd/v2/plugins/diff/erofs/plugin":          "io.containerd.differ.v1.erofs",
	"github.com/containerd/containerd/v2/plugins/mount/erofs":                "io.containerd.mount-handler.v1.erofs",
	"github.com/containerd/containerd/v2/plugins/mount/fsview/erofs":         "io.containerd.mount-handler.v1.erofs",
	"github.com/containerd/containerd/v2/plugins/snapshots/erofs/plugin":     "io.containerd.snapshotter.v1.erofs",
	"github.com/containerd/containerd/v2/plugins/snapshots/blockfile/plugin": "io.containerd.snapshotter.v1.blockfile",
	"github.com/containerd/containerd/v2/plugins/nri":                        "io.containerd.nri.v1.nri",
	"github.com/containerd/containerd/v2/plugins/imageverifier":              "io.containerd.image-verifier.v1.bindir",
	"github.com/containerd/containerd/v2/plugins/services/opt":               "io.containerd.internal.v1.opt",
}

// TestPluginsMatchBuiltins keeps plugins.go in step with containerd's
// builtins on an upgrade: every package upstream registers on Linux (with the
// Makefile's TAGS) is either imported by plugins.go or left out on purpose
// (leftOut, and then disabled anyway), and plugins.go imports nothing
// upstream dropped.
func TestPluginsMatchBuiltins(t *testing.T) {
	ctx := build.Default
	ctx.GOOS = "linux"
	ctx.BuildTags = []string{"no_btrfs", "no_zfs", "no_devmapper", "no_tracing"}
	up, err := ctx.Import(builtinsPkg, ".", 0)
	if err != nil {
		t.Fatalf("finding %s: %v", builtinsPkg, err)
	}
	f, err := parser.ParseFile(token.NewFileSet(), "plugins.go", nil, parser.ImportsOnly)
	if err != nil {
		t.Fatal(err)
	}
	var ours []string
	for _, imp := range f.Imports {
		p, err := strconv.Unquote(imp.Path.Value)
		if err != nil {
			t.Fatal(err)
		}
		ours = append(ours, p)
	}
	disabled := DisabledPlugins(SnapshotterOverlay)
	for _, p := range up.Imports {
		if uri, ok := leftOut[p]; ok {
			if slices.Contains(ours, p) {
				t.Errorf("plugins.go imports %s, which leftOut says it leaves out", p)
			}
			if !slices.Contains(disabled, uri) {
				t.Errorf("%s is left out, but DisabledPlugins does not disable %s", p, uri)
			}
			continue
		}
		if !slices.Contains(ours, p) {
			t.Errorf("containerd's builtins import %s: import it in plugins.go, or leave it out (leftOut) if DisabledPlugins disables it", p)
		}
	}
	for _, p := range ours {
		if !slices.Contains(up.Imports, p) {
			t.Errorf("plugins.go imports %s, which containerd's builtins no longer do", p)
		}
	}
	for p := range leftOut {
		if !slices.Contains(up.Imports, p) {
			t.Errorf("leftOut names %s, which containerd's builtins no longer import", p)
		}
	}
}
