package join

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// File modes of the token file and the directory EnsureTokenFile creates.
const (
	tokenFileMode fs.FileMode = 0o600
	tokenDirMode  fs.FileMode = 0o700
)

// EnsureTokenFile keeps a server's token file, <data-dir>/server/token, and
// returns the full token to show to the user.
//
// caPEM must be the exact bytes the supervisor serves at /cacerts. secret
// is the secret of --token (Token.Secret from Parse), or "" when --token was
// not given.
//
// On the first start (path does not exist) it writes the token with secret,
// or with a new one from GenerateSecret, to path with mode 0600 through a
// temporary file and a rename, creating missing directories with mode 0700.
//
// On later starts it reads the stored secret back. A --token secret that
// differs from it is an error: a cluster's secret cannot change silently,
// since every node that joined with it would be locked out. The stored
// file is rewritten when it no longer matches caPEM (the CA bundle changed)
// or holds a bare secret, and its mode is tightened to 0600.
func EnsureTokenFile(path string, caPEM []byte, secret string) (Token, error) {
	if _, err := parseBundle(caPEM); err != nil {
		return Token{}, fmt.Errorf("join: token file %s: the CA bundle: %w", path, err)
	}
	if secret != "" {
		if err := checkSecret(secret, "--token"); err != nil {
			return Token{}, err
		}
	}

	stored, err := readTokenFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if secret == "" {
			if secret, err = GenerateSecret(); err != nil {
				return Token{}, err
			}
		}
		tok := New(caPEM, secret)
		if err := writeTokenFile(path, tok); err != nil {
			return Token{}, err
		}
		return tok, nil
	case err != nil:
		return Token{}, err
	}

	if secret != "" && subtle.ConstantTimeCompare([]byte(secret), []byte(stored.Secret)) != 1 {
		return Token{}, fmt.Errorf("join: --token differs from the secret stored in %s; a cluster's secret cannot change: drop --token or pass the stored one", path)
	}
	tok := New(caPEM, stored.Secret)
	if stored != tok {
		if err := writeTokenFile(path, tok); err != nil {
			return Token{}, err
		}
		return tok, nil
	}
	st, err := os.Stat(path)
	if err != nil {
		return Token{}, fmt.Errorf("join: token file %s: %w", path, err)
	}
	if st.Mode().Perm() != tokenFileMode {
		if err := os.Chmod(path, tokenFileMode); err != nil {
			return Token{}, fmt.Errorf("join: token file %s: %w", path, err)
		}
	}
	return tok, nil
}

// readTokenFile reads and parses the token stored at path. Surrounding
// whitespace (the trailing newline) is ignored.
func readTokenFile(path string) (Token, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return Token{}, err
		}
		return Token{}, fmt.Errorf("join: read token file %s: %w", path, err)
	}
	return parse(strings.TrimSpace(string(b)), "token file "+path)
}

// writeTokenFile writes tok and a newline to path with mode 0600 through a
// temporary file in the same directory and a rename, so a reader sees the
// old token or the new one, never a part.
func writeTokenFile(path string, tok Token) (err error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, tokenDirMode); err != nil {
		return fmt.Errorf("join: create %s: %w", dir, err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("join: write token file %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if err := f.Chmod(tokenFileMode); err != nil {
		return fmt.Errorf("join: write token file %s: %w", path, err)
	}
	if _, err := f.WriteString(tok.String() + "\n"); err != nil {
		return fmt.Errorf("join: write token file %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("join: write token file %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("join: write token file %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("join: write token file %s: %w", path, err)
	}
	// Make the rename durable; best effort, as some file systems cannot
	// sync a directory and the rename has already happened.
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

// WriteTokenFile replaces the token file at path with tok (0600, through a
// temporary file and a rename): for a rotated token, which EnsureTokenFile
// refuses to change.
func WriteTokenFile(path string, tok Token) error { return writeTokenFile(path, tok) }
