package join

import (
	"strings"
	"testing"
)

func TestCAHashIsSHA256OfTheBytes(t *testing.T) {
	// SHA-256 of the empty string and of "abc" (FIPS 180-2 test vector).
	if got, want := CAHash(nil), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"; got != want {
		t.Errorf("CAHash(nil) = %s, want %s", got, want)
	}
	if got, want := CAHash([]byte("abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"; got != want {
		t.Errorf("CAHash(abc) = %s, want %s", got, want)
	}
	// Every byte counts, the trailing newline included.
	if CAHash([]byte("abc")) == CAHash([]byte("abc\n")) {
		t.Error("CAHash ignores a trailing newline")
	}
}

func TestTokenRoundTrip(t *testing.T) {
	ca := []byte("-----BEGIN CERTIFICATE-----\nnot parsed\n-----END CERTIFICATE-----\n")
	for _, secret := range []string{"abc", "0123456789abcdef0123456789abcdef01234567", "abcdef.0123456789abcdef", "a-b_c.d+e/f=", strings.Repeat("x", 256)} {
		tok := New(ca, secret)
		if !tok.Pinned() {
			t.Fatalf("New(%q) is not pinned", secret)
		}
		s := tok.String()
		if want := Prefix + CAHash(ca) + "::" + secret; s != want {
			t.Fatalf("String() = %q, want %q", s, want)
		}
		got, err := Parse(s)
		if err != nil {
			t.Fatalf("Parse(%q): %v", s, err)
		}
		if got != tok {
			t.Errorf("Parse(String()) = %+v, want %+v", got, tok)
		}

		bare, err := Parse(secret)
		if err != nil {
			t.Fatalf("Parse(bare %q): %v", secret, err)
		}
		if bare.Pinned() || bare.Secret != secret || bare.String() != secret {
			t.Errorf("Parse(bare %q) = %+v (String %q), want an unpinned token of that secret", secret, bare, bare.String())
		}
	}
}

func TestParseLowercasesTheHash(t *testing.T) {
	h := CAHash([]byte("ca"))
	tok, err := Parse(Prefix + strings.ToUpper(h) + "::abc")
	if err != nil {
		t.Fatal(err)
	}
	if tok.CAHash != h {
		t.Errorf("CAHash = %s, want %s", tok.CAHash, h)
	}
}

func TestParseErrors(t *testing.T) {
	h := CAHash([]byte("ca"))
	for _, tc := range []struct {
		name, in string
		want     []string
	}{
		{"empty", "", []string{"--token is empty"}},
		{"k3s token", "K10" + h + "::server:abc", []string{"--token", "k3s token", Prefix}},
		{"other version", "KEDGE2" + h + "::abc", []string{"--token", "KEDGE2 token", "only " + Prefix}},
		{"bad prefix", "XX" + h + "::abc", []string{"--token", "does not start with " + Prefix}},
		{"short hash", Prefix + h[:63] + "::abc", []string{"--token", "64 hex characters", "got 63 characters"}},
		{"long hash", Prefix + h + "0::abc", []string{"--token", "64 hex characters", "got 65 characters"}},
		{"non-hex hash", Prefix + "g" + h[1:] + "::abc", []string{"--token", "64 hex characters", "non-hex"}},
		{"empty secret", Prefix + h + "::", []string{"--token", "empty secret"}},
		{"colon in secret", Prefix + h + "::node:abc", []string{"--token", `contains ':'`, "letters, digits"}},
		{"colon in bare secret", "node:abc", []string{"--token", `contains ':'`}},
		{"triple colon", Prefix + h + ":::abc", []string{"--token", `contains ':'`}},
		{"space", "abc def", []string{"--token", `contains ' '`}},
		{"newline", "abc\n", []string{"--token", `contains '\n'`}},
		{"shell metacharacter", "abc$def", []string{"--token", `contains '$'`}},
		{"non-ASCII", "abcé", []string{"--token", `contains 'é'`}},
		{"too long", strings.Repeat("x", 257), []string{"--token", "257 characters", "at most 256"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := Parse(tc.in)
			wantErr(t, err, tc.want...)
			if tok != (Token{}) {
				t.Errorf("Parse returned %+v with its error, want the zero Token", tok)
			}
		})
	}
}

func TestParseErrorsDoNotRepeatTheSecret(t *testing.T) {
	// A secret typed with a "::" in it is read as a full token with a bad
	// prefix; the error must not show what came before the "::".
	_, err := Parse("my-password::x")
	wantErr(t, err, "does not start with")
	if strings.Contains(err.Error(), "my-password") {
		t.Errorf("error %q repeats the secret", err)
	}
	_, err = Parse(Prefix + CAHash(nil) + "::hunter2:x")
	wantErr(t, err, "contains ':'")
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error %q repeats the secret", err)
	}
}

func TestGenerateSecret(t *testing.T) {
	a, err := GenerateSecret()
	if err != nil {
		t.Fatal(err)
	}
	b, err := GenerateSecret()
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != 40 || a == b {
		t.Errorf("GenerateSecret = %q, %q: want two different 40-character secrets", a, b)
	}
	for _, r := range a {
		if !strings.ContainsRune("0123456789abcdef", r) {
			t.Errorf("GenerateSecret = %q: %q is not lowercase hex", a, r)
		}
	}
	if tok, err := Parse(a); err != nil || tok.Secret != a {
		t.Errorf("Parse(GenerateSecret()) = %+v, %v", tok, err)
	}
}

func TestLogValueRedactsTheSecret(t *testing.T) {
	log, buf := logBuffer()
	tok := New([]byte("ca"), "hunter2")
	log.Info("token", "token", tok)
	out := buf.String()
	if strings.Contains(out, "hunter2") {
		t.Errorf("log %q shows the secret", out)
	}
	if !strings.Contains(out, tok.CAHash) || !strings.Contains(out, "<redacted>") {
		t.Errorf("log %q lacks the CA hash or the redaction", out)
	}
}
