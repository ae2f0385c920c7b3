package join

import (
	"strings"
	"testing"
)

// tokenSeeds are real and hostile --token values: full and bare tokens,
// k3s tokens, other versions, bad hashes and secrets, separators in odd
// places, control and non-ASCII characters.
func tokenSeeds() []string {
	h := CAHash([]byte("ca"))
	return []string{
		"",
		Prefix + h + "::0123456789abcdef0123456789abcdef01234567",
		Prefix + strings.ToUpper(h) + "::abc",
		"0123456789abcdef0123456789abcdef01234567",
		"abcdef.0123456789abcdef",
		"a-b_c.d+e/f=",
		"K10" + h + "::server:abc",
		"K10" + h + "::node:abc",
		"KEDGE2" + h + "::abc",
		"KEDGE" + h + "::abc",
		"KEDGE1",
		Prefix + h,
		Prefix + "::abc",
		Prefix + h + "::",
		Prefix + h + ":::abc",
		Prefix + h + "::a::b",
		Prefix + h[:63] + "::abc",
		Prefix + h + "0::abc",
		Prefix + "g" + h[1:] + "::abc",
		"::",
		"::::",
		"my-password::x",
		"node:abc",
		"abc def",
		"abc\n",
		"abc\x00def",
		"abc$(reboot)",
		"abcé",
		"\xff\xfe",
		"\ufeffabc",
		strings.Repeat("x", 256),
		strings.Repeat("x", 257),
		Prefix + h + "::" + strings.Repeat("y", 257),
	}
}

// FuzzParse checks join.Parse on any --token value: it never panics; an
// error names --token, comes with the zero Token and never repeats what
// looks like a secret; a token it accepts is well formed and reads back
// from its String.
func FuzzParse(f *testing.F) {
	for _, s := range tokenSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := Parse(s)
		if err != nil {
			checkParseError(t, s, tok, err)
			return
		}
		checkToken(t, tok)
		if !tok.Pinned() && version(tok.Secret) != "" {
			t.Errorf("Parse(%q) took a token cut short for a bare secret", s)
		}
		again, err := Parse(tok.String())
		if err != nil || again != tok {
			t.Fatalf("Parse(%q) = %+v, but Parse of its String %q = %+v, %v", s, tok, tok.String(), again, err)
		}
		want := s // what String gives back: the input, with the hash in lower case
		if tok.Pinned() {
			n := len(Prefix) + len(tok.CAHash)
			want = Prefix + strings.ToLower(s[len(Prefix):n]) + s[n:]
		}
		if tok.String() != want {
			t.Errorf("Parse(%q) = %+v whose String is %q, want %q", s, tok, tok.String(), want)
		}
	})
}

// checkParseError checks the error Parse returned for s.
func checkParseError(t *testing.T, s string, tok Token, err error) {
	t.Helper()
	msg := err.Error()
	if tok != (Token{}) {
		t.Errorf("Parse(%q) returned %+v with its error", s, tok)
	}
	if !strings.HasPrefix(msg, "join: --token") {
		t.Errorf("Parse(%q): error %q does not start with \"join: --token\"", s, msg)
	}
	// What comes before and after "::" may be a password typed by mistake:
	// when it looks like a secret (long, secret characters only), the error
	// must not repeat it.
	head, secret, _ := strings.Cut(s, separator)
	for _, part := range []string{head, secret} {
		if len(part) >= 12 && checkSecret(part, "") == nil && strings.Contains(msg, part) {
			t.Errorf("Parse(%q): error %q repeats %q", s, msg, part)
		}
	}
}

// checkToken fails unless tok is a token Parse may return.
func checkToken(t *testing.T, tok Token) {
	t.Helper()
	if n := len(tok.Secret); n == 0 || n > maxSecretLen {
		t.Errorf("token %+v: secret of %d characters", tok, n)
	}
	for _, r := range tok.Secret {
		if !secretRune(r) {
			t.Errorf("token %+v: secret holds %q", tok, r)
		}
	}
	if tok.CAHash == "" {
		return
	}
	if len(tok.CAHash) != 64 || strings.Trim(tok.CAHash, "0123456789abcdef") != "" {
		t.Errorf("token %+v: the CA hash is not 64 lowercase hex characters", tok)
	}
}

// A full token cut short before its "::<secret>" used to pass for a bare
// secret (found by FuzzParse): an agent joined unpinned with the wrong
// secret, a first server took it as the cluster's secret.
func TestParseRefusesATokenCutShort(t *testing.T) {
	h := CAHash([]byte("ca"))
	for _, in := range []string{Prefix + h, Prefix, Prefix + h[:10], "KEDGE2" + h} {
		tok, err := Parse(in)
		wantErr(t, err, "--token", "cut short", Prefix+"<sha256 hex>::<secret>")
		if tok != (Token{}) || strings.Contains(err.Error(), h[:10]) {
			t.Errorf("Parse(%q) = %+v, %v: want the zero Token and an error without the hash", in, tok, err)
		}
	}
	// "KEDGE" without a digit, or later in the secret, is a secret.
	for _, in := range []string{"KEDGEabc", "xKEDGE1abc", "kedge1abc"} {
		if tok, err := Parse(in); err != nil || tok.Secret != in {
			t.Errorf("Parse(%q) = %+v, %v: want a bare secret", in, tok, err)
		}
	}
}
