package manifests

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"strings"

	builtin "github.com/kedge-io/kedge/manifests"
)

// builtinsHash is the SHA-256 of what the built-ins apply: each rendered
// manifest with its name, and the names --disable removes.
func builtinsHash(docs map[string][]byte, disabled []string) string {
	h := sha256.New()
	names := make([]string, 0, len(docs))
	for name := range docs {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		h.Write([]byte(name + "\x00"))
		h.Write(docs[name])
		h.Write([]byte{0})
	}
	d := slices.Clone(disabled)
	slices.Sort(d)
	h.Write([]byte("disabled\x00" + strings.Join(d, ",")))
	return hex.EncodeToString(h.Sum(nil))
}

// AppliedBefore reports whether an earlier start applied the built-ins as
// they are now (same manifests, same values, same --disable), as recorded
// in Config.Record: on a restart their objects (the RBAC the node's
// components need) are in place before this start applies them again.
func (c *Controller) AppliedBefore() bool {
	if c.cfg.Record == "" {
		return false
	}
	docs, err := Render(builtin.FS, c.cfg.Values)
	if err != nil {
		return false
	}
	raw, err := os.ReadFile(c.cfg.Record)
	return err == nil && strings.TrimSpace(string(raw)) == builtinsHash(docs, c.cfg.Disabled)
}

// record writes the hash of the built-ins just applied into Config.Record.
func (c *Controller) record(docs map[string][]byte) error {
	if c.cfg.Record == "" {
		return nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(c.cfg.Record), ".manifests-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	_, err = tmp.WriteString(builtinsHash(docs, c.cfg.Disabled) + "\n")
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(tmp.Name(), c.cfg.Record)
}
