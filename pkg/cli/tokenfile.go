package cli

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/pflag"
)

// tokenFileEnv is the environment variable --token-file defaults to (the
// installer's KEDGE_TOKEN_FILE).
const tokenFileEnv = "KEDGE_TOKEN_FILE"

// registerTokenFile adds --token-file to fs: the token read from a file,
// so that it never appears in the process's command line.
func registerTokenFile(fs *pflag.FlagSet, p *string) {
	fs.StringVar(p, "token-file", os.Getenv(tokenFileEnv),
		"file holding the join token (instead of --token, which any user sees in ps; default $"+tokenFileEnv+")")
}

// readTokenFile returns token, or the trimmed contents of file when token
// is empty. Both set is an error naming both flags; an unreadable or empty
// file is an error naming it.
func readTokenFile(token, file string) (string, error) {
	if file == "" {
		return token, nil
	}
	if token != "" {
		return "", errors.New("--token and --token-file: give one")
	}
	raw, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("--token-file %s: %w", file, err)
	}
	tok := strings.TrimSpace(string(raw))
	if tok == "" {
		return "", fmt.Errorf("--token-file %s is empty: it must hold the join token (a server's <data-dir>/server/token)", file)
	}
	if strings.ContainsAny(tok, "\r\n") {
		return "", fmt.Errorf("--token-file %s holds more than one line: it must hold only the join token", file)
	}
	return tok, nil
}
