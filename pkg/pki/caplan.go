package pki

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
)

// CrossFiles lists the cross certificates a CA rotation leaves beside the
// five CAs of b (CrossPath); a server joining during or after a rotation
// needs them, for the peers whose trust stores still hold only the old CAs.
func (b Bundle) CrossFiles() []string {
	var out []string
	for _, c := range b.cas() {
		out = append(out, CrossPath(c.cert))
	}
	return out
}

// CARotationFiles returns what StartCARotation wrote for the five CAs of b,
// by path relative to b.Dir: each CA's bundle (new + old), its new key and
// its cross certificate. Another server of the cluster applies them with
// ApplyCARotationFiles.
func CARotationFiles(b Bundle) (map[string][]byte, error) {
	out := map[string][]byte{}
	for _, c := range b.cas() {
		if _, err := os.Stat(nextKeyPath(c.key)); err == nil {
			return nil, fmt.Errorf("%s: the rotation's first phase did not complete: run `kedge certificate rotate-ca` again", c.cert)
		}
		for _, p := range []string{c.cert, c.key, CrossPath(c.cert)} {
			data, err := os.ReadFile(p)
			if err != nil {
				return nil, fmt.Errorf("pki: read %s: %w", p, err)
			}
			rel, err := filepath.Rel(b.Dir, p)
			if err != nil {
				return nil, err
			}
			out[filepath.ToSlash(rel)] = data
		}
	}
	return out, nil
}

// ApplyCARotationFiles brings the five CAs of b to the state
// CARotationFiles read on the server that started the rotation. For each
// CA whose key file differs from the one in files it checks that the
// bundle there holds the CA of the key this server has (the rotation is of
// this cluster's CAs) and of the key sent (new first), then writes the
// cross certificate, the bundle and last the key: every state in between
// is consistent (the CA file holds the certificate of the key file), and a
// call after a crash completes the rest. A CA whose key is already the new
// one is left alone (also when FinishCARotation has already run). It
// returns the CA files it changed.
func ApplyCARotationFiles(b Bundle, files map[string][]byte) ([]string, error) {
	get := func(p string) ([]byte, error) {
		rel, err := filepath.Rel(b.Dir, p)
		if err != nil {
			return nil, err
		}
		data, ok := files[filepath.ToSlash(rel)]
		if !ok {
			return nil, fmt.Errorf("the CA rotation's files lack %s", filepath.ToSlash(rel))
		}
		return data, nil
	}
	for _, c := range b.cas() { // every file there, before anything changes
		for _, p := range []string{c.cert, c.key, CrossPath(c.cert)} {
			if _, err := get(p); err != nil {
				return nil, err
			}
		}
	}
	var changed []string
	for _, c := range b.cas() {
		bundle, err := get(c.cert)
		if err != nil {
			return changed, err
		}
		keyPEM, err := get(c.key)
		if err != nil {
			return changed, err
		}
		cross, err := get(CrossPath(c.cert))
		if err != nil {
			return changed, err
		}
		have, err := os.ReadFile(c.key)
		if err != nil {
			return changed, fmt.Errorf("pki: read %s: %w", c.key, err)
		}
		if bytes.Equal(have, keyPEM) {
			continue
		}
		if err := checkPlanned(c, bundle, keyPEM, have); err != nil {
			return changed, err
		}
		if err := WriteFileAtomic(CrossPath(c.cert), cross, publicMode); err != nil {
			return changed, err
		}
		if err := WriteFileAtomic(c.cert, bundle, publicMode); err != nil {
			return changed, err
		}
		if err := WriteFileAtomic(c.key, keyPEM, keyMode); err != nil {
			return changed, err
		}
		changed = append(changed, c.cert)
	}
	return changed, nil
}

// checkPlanned checks that bundle starts with the CA of newKey and holds
// the CA of oldKey (the key this server has).
func checkPlanned(c caFile, bundle, newKey, oldKey []byte) error {
	all, err := parseCerts(bundle)
	if err != nil || len(all) < 2 {
		return fmt.Errorf("the CA rotation's %s is not a bundle of the new and the old CA", filepath.Base(c.cert))
	}
	next, err := parsePrivateKey(newKey)
	if err != nil {
		return fmt.Errorf("the CA rotation's %s: %w", filepath.Base(c.key), err)
	}
	if !publicKeyMatches(all[0], next) {
		return fmt.Errorf("the CA rotation's %s does not start with the CA of its %s", filepath.Base(c.cert), filepath.Base(c.key))
	}
	old, err := parsePrivateKey(oldKey)
	if err != nil {
		return fmt.Errorf("pki: parse %s: %w", c.key, err)
	}
	for _, cert := range all[1:] {
		if publicKeyMatches(cert, old) {
			return nil
		}
	}
	return fmt.Errorf("the CA rotation's %s does not hold this server's CA (the one of %s): it is not a rotation of this cluster's CAs", filepath.Base(c.cert), c.key)
}
