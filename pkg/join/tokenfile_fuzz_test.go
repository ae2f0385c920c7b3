package join

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// FuzzEnsureTokenFile checks EnsureTokenFile on any stored token file and
// any --token secret: it never panics; an error names the token file or
// --token and leaves a stored file as it was; a token it returns is the
// one the file then holds, mode 0600, with the current CA's hash and the
// --token or stored secret; nothing but the token file is left in its
// directory.
func FuzzEnsureTokenFile(f *testing.F) {
	// The CA is made once, by the first input (newTestCA wants a *testing.T).
	var (
		once sync.Once
		ca   *testCA
	)
	h := strings.Repeat("ab", 32) // a hash of another CA
	for _, seed := range []struct {
		content string
		exists  bool
		secret  string
	}{
		{"", false, ""},
		{"", false, "my-secret"},
		{"", false, "bad secret"},
		{Prefix + h + "::stored\n", true, ""},
		{Prefix + h + "::stored\n", true, "stored"},
		{Prefix + h + "::stored\n", true, "other"},
		{"stored\n", true, "stored"},
		{Prefix + strings.ToUpper(h) + "::stored\n", true, ""},
		{"hand-written\n", true, ""},
		{"  hand-written \r\n\r\n", true, ""},
		{"", true, ""},
		{"\n", true, "my-secret"},
		{"\ufeffhand-written\n", true, ""},
		{"two\nlines\n", true, ""},
		{"K10" + h + "::server:abc\n", true, ""},
		{"KEDGE2" + h + "::abc\n", true, ""},
		{Prefix + h + "::\n", true, ""},
		{"\x00\x01\x02\xff", true, ""},
		{strings.Repeat("x", 300), true, ""},
	} {
		f.Add([]byte(seed.content), seed.exists, seed.secret)
	}
	f.Fuzz(func(t *testing.T, content []byte, exists bool, secret string) {
		once.Do(func() { ca = newTestCA(t) })
		h := CAHash(ca.pem)
		dir := filepath.Join(t.TempDir(), "server")
		path := filepath.Join(dir, "token")
		if exists {
			if err := os.MkdirAll(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, content, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		tok, err := EnsureTokenFile(path, ca.pem, secret)
		if err != nil {
			msg := err.Error()
			if !strings.Contains(msg, path) && !strings.Contains(msg, "--token") {
				t.Errorf("error %q names neither the token file nor --token", msg)
			}
			if exists {
				if got, _ := os.ReadFile(path); !bytes.Equal(got, content) {
					t.Errorf("after the error %q the file holds %q, want it unchanged (%q)", msg, got, content)
				}
			}
			checkOnlyTokenFile(t, dir, exists)
			return
		}
		checkToken(t, tok)
		if tok.CAHash != h {
			t.Errorf("token %+v: want the CA hash %s", tok, h)
		}
		if stored, perr := parse(strings.TrimSpace(string(content)), "file"); secret != "" && tok.Secret != secret {
			t.Errorf("token %+v: want the --token secret %q", tok, secret)
		} else if exists && secret == "" && (perr != nil || tok.Secret != stored.Secret) {
			t.Errorf("token %+v: want the stored secret of %q (%v)", tok, content, perr)
		}
		if got := readToken(t, path); got != tok.String()+"\n" {
			t.Errorf("file holds %q, want %q", got, tok.String()+"\n")
		}
		checkOnlyTokenFile(t, dir, true)
	})
}

// checkOnlyTokenFile fails unless dir holds the token file alone, or
// nothing when want is false.
func checkOnlyTokenFile(t *testing.T, dir string, want bool) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil && want {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if want && (len(names) != 1 || names[0] != "token") || !want && len(names) != 0 {
		t.Errorf("%s holds %q, want only the token file (%v)", dir, names, want)
	}
}
