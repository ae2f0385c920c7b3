package registries

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/core/remotes/docker/config"
)

// FuzzParse: any registries.yaml is accepted or refused with an error, never
// a panic; an error never repeats a value (a password written in the wrong
// place); whatever is
// accepted renders host files that containerd's own parser reads for every
// registry named, and rewrite plans that are valid names or errors.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"",
		"mirrors:\n  docker.io:\n    endpoint: [\"https://m.example.com:5000\", \"http://10.0.0.1/root\"]\n",
		"mirrors:\n  \"*\":\n    endpoint: [https://c]\n    rewrite: {\"^(.*)$\": \"cache/$1\"}\n",
		"mirrors:\n  r.example:5000:\n    endpoint: [https://m/v2]\n    rewrite: {\"^a/(.*)\": \"b/$1\", \"x\": \"\"}\n",
		"configs:\n  m:\n    auth: {username: u, password: SECRETVALUE}\n",
		"configs:\n  m:\n    auth: SECRETVALUE\n",
		"configs:\n  m:\n    auth: {auth: dTpw}\n    tls: {insecure_skip_verify: true}\n",
		"configs:\n  \"*\":\n    tls: {insecure_skip_verify: true}\n",
		"mirrors: {a: {endpoint: [\"https://\\\"q\\\\\"]}}\n",
		"mirrors:\n  docker.io: &m {endpoint: [https://m]}\n  quay.io: *m\n",
		"mirrors: [1, 2]\n",
		"---\n---\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		r, err := Parse([]byte(in))
		if err != nil {
			// A value, not an anchor, a tag or a key of that name.
			value := !regexp.MustCompile(`[*&!]SECRETVALUE|SECRETVALUE[^\n]*:`).MatchString(in)
			if value && strings.Contains(err.Error(), "SECRETVALUE") {
				t.Fatalf("the error repeats a value: %v", err)
			}
			return
		}
		dir := filepath.Join(t.TempDir(), "certs.d")
		if err := r.WriteHostDirs(dir); err != nil {
			t.Fatalf("accepted, but WriteHostDirs: %v", err)
		}
		for registry := range r.Mirrors {
			if registry == Wildcard {
				registry = "any.example.com"
			}
			if _, err := config.ConfigureHosts(context.Background(), config.HostOptions{HostDir: config.HostDirFromRoot(dir)})(registry); err != nil {
				raw, _ := os.ReadFile(filepath.Join(dir, HostDir(registry), HostsFile))
				t.Fatalf("containerd rejects the host file of %s: %v\n%s", registry, err, raw)
			}
			if len(r.Mirrors[registry].Rewrites) > 0 || registry == "any.example.com" {
				if _, _, err := r.planRewrite(registry + "/some/image:1"); err != nil && !strings.Contains(err.Error(), ".rewrite turns") {
					t.Fatalf("planRewrite: %v", err)
				}
			}
		}
	})
}
