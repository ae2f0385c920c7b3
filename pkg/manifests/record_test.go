package manifests

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	builtin "github.com/kedge-io/kedge/manifests"
)

// The record matches only the built-ins as they were applied: other
// values or another --disable set make the next start wait again.
func TestAppliedBefore(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Values: Values{ClusterDNS: "10.43.0.10", ClusterDomain: "cluster.local"}, Disabled: []string{"coredns"},
		Record: filepath.Join(dir, "manifests-applied"), Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	c := New(cfg)
	if c.AppliedBefore() {
		t.Fatal("AppliedBefore without a record")
	}
	docs, err := Render(builtin.FS, cfg.Values)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.record(docs); err != nil {
		t.Fatal(err)
	}
	if !c.AppliedBefore() {
		t.Error("not AppliedBefore after its record")
	}
	if info, err := os.Stat(cfg.Record); err != nil || info.Mode().Perm()&0o077 != 0 {
		t.Errorf("record: %v, mode %v; want 0600", err, info.Mode())
	}
	other := cfg
	other.Values.ClusterDNS = "10.43.0.11"
	if New(other).AppliedBefore() {
		t.Error("AppliedBefore with other values")
	}
	other = cfg
	other.Disabled = nil
	if New(other).AppliedBefore() {
		t.Error("AppliedBefore with another --disable")
	}
	other = cfg
	other.Record = ""
	if New(other).AppliedBefore() {
		t.Error("AppliedBefore without a Record file")
	}
}
