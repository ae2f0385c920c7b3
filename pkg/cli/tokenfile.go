package cli

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/pflag"
)

// The environment variables --token-file, --token and an agent's --server
// default to (the installer's names): a service reads them from its
// environment file (0600) instead of a command line every user sees.
const (
	tokenFileEnv = "KEDGE_TOKEN_FILE"
	tokenEnv     = "KEDGE_TOKEN"
	serverEnv    = "KEDGE_URL"
)

// tokenFromEnv is the --token to use when neither --token nor --token-file
// was given: $KEDGE_TOKEN.
func tokenFromEnv(token, file string) string {
	if token == "" && file == "" {
		return os.Getenv(tokenEnv)
	}
	return token
}

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
