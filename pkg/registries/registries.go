package registries

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strings"

	"github.com/distribution/reference"
	"go.yaml.in/yaml/v3"
)

// DefaultFile is where kedge reads the mirrors and registry credentials of
// a node (--private-registry).
const DefaultFile = "/etc/kedge/registries.yaml"

// Wildcard is the mirror (and config) key that applies to every registry
// without an entry of its own.
const Wildcard = "*"

// DockerHub is the registry of image names without a registry host; its
// default endpoint is DockerHubEndpoint.
const (
	DockerHub         = "docker.io"
	DockerHubEndpoint = "https://registry-1.docker.io"
)

// Registries is the content of registries.yaml (k3s's format), validated.
// The zero value configures nothing: containerd pulls from each image's own
// registry.
type Registries struct {
	// Mirrors maps a registry host (docker.io, registry.example.com:5000)
	// or Wildcard to the endpoints tried, in order, before the registry
	// itself.
	Mirrors map[string]Mirror `yaml:"mirrors"`
	// Configs maps an endpoint or registry host (host or host:port, as in
	// the endpoint URLs) to its credentials and TLS settings. Wildcard
	// gives TLS settings to every host without its own.
	Configs map[string]Config `yaml:"configs"`
	// File is where the settings came from, for messages; empty: none.
	File string `yaml:"-"`
}

// Mirror is one registry's entry under mirrors.
type Mirror struct {
	// Endpoints are http or https URLs of registries serving the same
	// images, tried in order. An endpoint whose URL has a path other than
	// "" or "/" uses that path as the registry API root instead of /v2.
	Endpoints []string `yaml:"endpoint"`
	// Rewrites change the repository name (without the registry host) of a
	// pull through the endpoints: the first pattern that matches is
	// replaced (regexp.ReplaceAllString, $1 for groups). The registry
	// itself, the last resort, is always asked for the original name.
	Rewrites Rewrites `yaml:"rewrite"`
}

// Rewrites are regular expressions and their replacements, in the file's
// order.
type Rewrites []Rewrite

// Rewrite is one pattern → replacement of a mirror's rewrite map.
type Rewrite struct {
	Pattern     *regexp.Regexp
	Replacement string
}

// UnmarshalYAML keeps the order of the mapping and compiles the patterns.
func (r *Rewrites) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: rewrite: want a mapping of regular expression to replacement", n.Line)
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || v.Kind != yaml.ScalarNode {
			return fmt.Errorf("line %d: rewrite: want a mapping of regular expression to replacement", k.Line)
		}
		re, err := regexp.Compile(k.Value)
		if err != nil {
			return fmt.Errorf("line %d: rewrite %q: not a regular expression: %v", k.Line, k.Value, err)
		}
		*r = append(*r, Rewrite{Pattern: re, Replacement: v.Value})
	}
	return nil
}

// Apply returns the repository name after the first rewrite whose pattern
// matches repo, and whether one did.
func (r Rewrites) Apply(repo string) (string, bool) {
	for _, rw := range r {
		if rw.Pattern.MatchString(repo) {
			return rw.Pattern.ReplaceAllString(repo, rw.Replacement), true
		}
	}
	return repo, false
}

// Config is one host's entry under configs.
type Config struct {
	Auth *Auth `yaml:"auth"`
	TLS  *TLS  `yaml:"tls"`
}

// Auth are the credentials for a host: a username and password, auth (the
// base64 of "username:password", as in a docker config.json), or an
// identity token (a refresh token for the registry's token service).
type Auth struct {
	Username      string `yaml:"username"`
	Password      string `yaml:"password"`
	Auth          string `yaml:"auth"`
	IdentityToken string `yaml:"identitytoken"`
	// IdentityTokenAlt is the same setting spelt identity_token.
	IdentityTokenAlt string `yaml:"identity_token"`
}

// TLS are a host's TLS settings: the CA that signs its certificate, a client
// certificate and key, or no verification at all.
type TLS struct {
	CAFile             string `yaml:"ca_file"`
	CertFile           string `yaml:"cert_file"`
	KeyFile            string `yaml:"key_file"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
}

// Load reads and validates the registries file at path. A missing file is
// no configuration when required is false (the default path), an error
// otherwise (a path the user named). Every error names the file and the key.
func Load(path string, required bool) (Registries, error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && !required {
		return Registries{}, nil
	}
	if err != nil {
		return Registries{}, fmt.Errorf("--private-registry %s: %w", path, err)
	}
	r, err := Parse(raw)
	if err != nil {
		return Registries{}, fmt.Errorf("--private-registry %s: %w", path, err)
	}
	r.File = path
	return r, nil
}

// knownFieldRE matches yaml.v3's message for a key the types do not have.
var knownFieldRE = regexp.MustCompile(`line (\d+): field (\S+) not found in type registries\.(\w+)`)

// valueRE matches the value yaml.v3 quotes in a type error.
var valueRE = regexp.MustCompile("cannot unmarshal !!(\\w+) `[^`]*`")

// keysOf names the keys each section accepts, for the unknown-key message.
var keysOf = map[string]string{
	"Registries": "mirrors, configs",
	"Mirror":     "endpoint, rewrite",
	"Config":     "auth, tls",
	"Auth":       "username, password, auth, identitytoken",
	"TLS":        "ca_file, cert_file, key_file, insecure_skip_verify",
}

// Parse decodes and validates registries.yaml content strictly: an unknown
// key, a second document, a bad URL, pattern or file is an error naming it.
func Parse(raw []byte) (Registries, error) {
	var r Registries
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&r); errors.Is(err, io.EOF) {
		return Registries{}, nil
	} else if err != nil {
		return Registries{}, friendlyYAMLError(err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return Registries{}, errors.New("a second YAML document: registries.yaml is one document with mirrors and configs")
	}
	return r, r.validate()
}

func friendlyYAMLError(err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return errors.New(strings.TrimPrefix(err.Error(), "yaml: "))
	}
	parts := make([]string, 0, len(te.Errors))
	for _, e := range te.Errors {
		if f := knownFieldRE.FindStringSubmatch(e); f != nil {
			e = fmt.Sprintf("line %s: unknown key %q (known here: %s)", f[1], f[2], keysOf[f[3]])
		}
		// The value may be a password written in the wrong place: not repeated.
		e = valueRE.ReplaceAllString(e, "cannot unmarshal a !!$1 value")
		parts = append(parts, e)
	}
	return errors.New(strings.Join(parts, "; "))
}

// validate checks what the YAML types cannot: hosts, URLs, files.
func (r *Registries) validate() error {
	for _, host := range sortedKeys(r.Mirrors) {
		m := r.Mirrors[host]
		key := fmt.Sprintf("mirrors.%q", host)
		if err := checkHost(host); err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		for i, e := range m.Endpoints {
			if _, err := parseEndpoint(e); err != nil {
				return fmt.Errorf("%s.endpoint[%d] %q: %w", key, i, redacted(e), err)
			}
		}
		if len(m.Rewrites) > 0 && len(m.Endpoints) == 0 {
			return fmt.Errorf("%s.rewrite: applies to the mirror's endpoints, and it has none (add endpoint)", key)
		}
	}
	for _, host := range sortedKeys(r.Configs) {
		c := r.Configs[host]
		key := fmt.Sprintf("configs.%q", host)
		if err := checkHost(host); err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		if c.Auth != nil {
			if host == Wildcard {
				return fmt.Errorf("%s.auth: credentials for every host would go to any registry; name the host they belong to", key)
			}
			if err := c.Auth.check(); err != nil {
				return fmt.Errorf("%s.auth%w", key, err)
			}
		}
		if c.TLS != nil {
			if err := c.TLS.check(); err != nil {
				return fmt.Errorf("%s.tls%w", key, err)
			}
		}
	}
	return nil
}

// checkHost accepts a registry host, optionally with a port, or Wildcard.
func checkHost(host string) error {
	if host == Wildcard {
		return nil
	}
	if strings.Contains(host, "://") {
		return errors.New("want a registry host such as registry.example.com:5000, not a URL")
	}
	if !hostRE.MatchString(host) {
		return errors.New("not a registry host (host or host:port, such as docker.io or registry.example.com:5000)")
	}
	return nil
}

// hostRE matches a registry host with an optional port, as image names have them.
var hostRE = regexp.MustCompile(`^(?:` + reference.DomainRegexp.String() + `)$`)

// redacted is e without a password, for messages.
func redacted(e string) string {
	if u, err := url.Parse(e); err == nil {
		return u.Redacted()
	}
	return e
}

// parseEndpoint parses an endpoint URL: http or https, a host, nothing else
// but a path.
func parseEndpoint(e string) (*url.URL, error) {
	u, err := url.Parse(e)
	if err != nil {
		return nil, errors.New("not a URL (want https://host[:port][/path])")
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return nil, errors.New("not an http or https URL (want https://host[:port][/path])")
	}
	if u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, errors.New("want https://host[:port][/path], with no user, query or fragment")
	}
	return u, nil
}

func (a *Auth) check() error {
	if a.IdentityTokenAlt != "" {
		if a.IdentityToken != "" && a.IdentityToken != a.IdentityTokenAlt {
			return errors.New(": identitytoken and identity_token differ; give one")
		}
		a.IdentityToken, a.IdentityTokenAlt = a.IdentityTokenAlt, ""
	}
	ways := 0
	if a.Username != "" || a.Password != "" {
		ways++
		if a.Username == "" {
			return errors.New(".username: missing (password is set)")
		}
	}
	if a.Auth != "" {
		ways++
		dec, err := base64.StdEncoding.DecodeString(a.Auth)
		if err != nil {
			return errors.New(".auth: not base64 (want the base64 of username:password)")
		}
		if _, _, ok := strings.Cut(string(dec), ":"); !ok {
			return errors.New(".auth: the decoded value has no colon (want the base64 of username:password)")
		}
	}
	if a.IdentityToken != "" {
		ways++
	}
	switch {
	case ways == 0:
		return errors.New(": empty (give username and password, auth, or identitytoken)")
	case ways > 1:
		return errors.New(": give one of username/password, auth, identitytoken")
	}
	return nil
}

func (t *TLS) check() error {
	for _, f := range []struct{ key, path string }{{"ca_file", t.CAFile}, {"cert_file", t.CertFile}, {"key_file", t.KeyFile}} {
		if f.path == "" {
			continue
		}
		if !strings.HasPrefix(f.path, "/") {
			return fmt.Errorf(".%s %q: want an absolute path", f.key, f.path)
		}
		if st, err := os.Stat(f.path); err != nil {
			return fmt.Errorf(".%s: %w", f.key, err)
		} else if st.IsDir() {
			return fmt.Errorf(".%s %s: a directory, want a PEM file", f.key, f.path)
		}
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		return errors.New(": cert_file and key_file go together (a client certificate and its key)")
	}
	return nil
}

// Empty reports whether r configures nothing.
func (r Registries) Empty() bool { return len(r.Mirrors) == 0 && len(r.Configs) == 0 }

// HasRewrites reports whether any mirror rewrites repository names (which
// kedge's image proxy implements; containerd has no such setting).
func (r Registries) HasRewrites() bool {
	for _, m := range r.Mirrors {
		if len(m.Rewrites) > 0 {
			return true
		}
	}
	return false
}

// mirrorFor returns the mirror entry that applies to registry: its own, or
// the wildcard's.
func (r Registries) mirrorFor(registry string) (Mirror, bool) {
	if m, ok := r.Mirrors[registry]; ok {
		return m, true
	}
	m, ok := r.Mirrors[Wildcard]
	return m, ok
}

// tlsFor returns the TLS settings of host: its own, or the wildcard's.
func (r Registries) tlsFor(host string) *TLS {
	if c, ok := r.Configs[host]; ok && c.TLS != nil {
		return c.TLS
	}
	if c, ok := r.Configs[Wildcard]; ok {
		return c.TLS
	}
	return nil
}

// Auths returns the credentials by host, for containerd's CRI plugin.
func (r Registries) Auths() map[string]Auth {
	out := map[string]Auth{}
	for host, c := range r.Configs {
		if c.Auth != nil {
			out[host] = *c.Auth
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
