package join

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// readToken returns the content of the token file at path and fails unless
// its mode is 0600.
func readToken(t *testing.T, path string) string {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("%s has mode %v, want 0600", path, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestEnsureTokenFileFirstStartGeneratesASecret(t *testing.T) {
	ca := newTestCA(t)
	path := filepath.Join(t.TempDir(), "server", "token")

	tok, err := EnsureTokenFile(path, ca.pem, "")
	if err != nil {
		t.Fatal(err)
	}
	if !tok.Pinned() || tok.CAHash != CAHash(ca.pem) || len(tok.Secret) != 40 {
		t.Errorf("token %+v: want a pinned token with a generated secret", tok)
	}
	if got, want := readToken(t, path), tok.String()+"\n"; got != want {
		t.Errorf("file holds %q, want %q", got, want)
	}
	if st, err := os.Stat(filepath.Dir(path)); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("directory: %v, %v; want mode 0700", st.Mode(), err)
	}
	if leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".token.tmp-*")); len(leftovers) != 0 {
		t.Errorf("temporary files left behind: %v", leftovers)
	}
}

func TestEnsureTokenFileFirstStartTakesTheFlagSecret(t *testing.T) {
	ca := newTestCA(t)
	path := filepath.Join(t.TempDir(), "token")
	tok, err := EnsureTokenFile(path, ca.pem, "my-secret")
	if err != nil {
		t.Fatal(err)
	}
	if want := New(ca.pem, "my-secret"); tok != want {
		t.Errorf("token %+v, want %+v", tok, want)
	}
	if got := readToken(t, path); got != tok.String()+"\n" {
		t.Errorf("file holds %q", got)
	}
}

func TestEnsureTokenFileRestart(t *testing.T) {
	ca := newTestCA(t)
	path := filepath.Join(t.TempDir(), "token")
	first, err := EnsureTokenFile(path, ca.pem, "")
	if err != nil {
		t.Fatal(err)
	}

	// Without --token, and with the same secret in --token, the stored
	// token comes back unchanged.
	for _, secret := range []string{"", first.Secret} {
		again, err := EnsureTokenFile(path, ca.pem, secret)
		if err != nil {
			t.Fatalf("restart with --token %q: %v", secret, err)
		}
		if again != first {
			t.Errorf("restart with --token %q: token %+v, want %+v", secret, again, first)
		}
	}
	if got := readToken(t, path); got != first.String()+"\n" {
		t.Errorf("file holds %q after restarts, want %q", got, first.String()+"\n")
	}
}

func TestEnsureTokenFileRefusesAnotherFlagSecret(t *testing.T) {
	ca := newTestCA(t)
	path := filepath.Join(t.TempDir(), "token")
	first, err := EnsureTokenFile(path, ca.pem, "old-secret")
	if err != nil {
		t.Fatal(err)
	}
	_, err = EnsureTokenFile(path, ca.pem, "new-secret")
	wantErr(t, err, "--token", path, "cannot change")
	if strings.Contains(err.Error(), "old-secret") || strings.Contains(err.Error(), "new-secret") {
		t.Errorf("error %q shows a secret", err)
	}
	if got := readToken(t, path); got != first.String()+"\n" {
		t.Errorf("file changed to %q", got)
	}
}

func TestEnsureTokenFileFollowsTheCA(t *testing.T) {
	oldCA, newCA := newTestCA(t), newTestCA(t)
	path := filepath.Join(t.TempDir(), "token")
	first, err := EnsureTokenFile(path, oldCA.pem, "")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := EnsureTokenFile(path, newCA.pem, "")
	if err != nil {
		t.Fatal(err)
	}
	if want := New(newCA.pem, first.Secret); tok != want {
		t.Errorf("token %+v, want %+v (new hash, same secret)", tok, want)
	}
	if got := readToken(t, path); got != tok.String()+"\n" {
		t.Errorf("file holds %q, want the new token", got)
	}
}

func TestEnsureTokenFileUpgradesABareSecretAndTightensTheMode(t *testing.T) {
	ca := newTestCA(t)
	path := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(path, []byte("hand-written\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tok, err := EnsureTokenFile(path, ca.pem, "")
	if err != nil {
		t.Fatal(err)
	}
	if want := New(ca.pem, "hand-written"); tok != want {
		t.Errorf("token %+v, want %+v", tok, want)
	}
	if got := readToken(t, path); got != tok.String()+"\n" {
		t.Errorf("file holds %q", got)
	}

	// A file already in the full form but too open is only chmodded.
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := EnsureTokenFile(path, ca.pem, ""); err != nil {
		t.Fatal(err)
	}
	readToken(t, path)
}

func TestEnsureTokenFileErrors(t *testing.T) {
	ca := newTestCA(t)
	dir := t.TempDir()

	broken := filepath.Join(dir, "broken")
	if err := os.WriteFile(broken, []byte("XX"+CAHash(ca.pem)+"::abc\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := EnsureTokenFile(broken, ca.pem, "")
	wantErr(t, err, "token file "+broken, "does not start with")

	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = EnsureTokenFile(empty, ca.pem, "")
	wantErr(t, err, "token file "+empty, "is empty")

	_, err = EnsureTokenFile(filepath.Join(dir, "new"), ca.pem, "bad:secret")
	wantErr(t, err, "--token", "contains ':'")

	_, err = EnsureTokenFile(filepath.Join(dir, "new"), []byte("not a CA"), "")
	wantErr(t, err, filepath.Join(dir, "new"), "no PEM certificate")
	if _, err := os.Stat(filepath.Join(dir, "new")); !os.IsNotExist(err) {
		t.Errorf("a failed call wrote the token file: %v", err)
	}
}
