package registries

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// HostsFile is the name of containerd's per-registry configuration in a
// host directory (<config_path>/<host>/hosts.toml).
const HostsFile = "hosts.toml"

// DefaultHostDir is the host directory containerd reads for a registry that
// has none of its own: where the Wildcard mirror goes.
const DefaultHostDir = "_default"

// hostEntry is one registry endpoint in a hosts.toml.
type hostEntry struct {
	url          string // scheme://host/path, the API root
	overridePath bool   // url's path is the API root, not <path>/v2
	mirror       bool   // pull and resolve only
	tls          *TLS
}

// endpointEntry turns a validated endpoint URL into its hosts.toml entry,
// with the TLS settings r has for its host.
func (r Registries) endpointEntry(endpoint string) hostEntry {
	u, _ := parseEndpoint(endpoint) // validated by Parse
	e := hostEntry{mirror: true, tls: r.tlsFor(u.Host)}
	switch p := strings.TrimSuffix(u.Path, "/"); {
	case p == "":
		e.url = u.Scheme + "://" + u.Host + "/v2"
	case p == "/v2" || strings.HasSuffix(p, "/v2"):
		e.url = u.Scheme + "://" + u.Host + p
	default:
		e.url, e.overridePath = u.Scheme+"://"+u.Host+p, true
	}
	return e
}

// defaultEndpoint is the registry's own endpoint, the last resort of every
// pull ("" for the Wildcard: the image's registry, chosen by containerd).
func defaultEndpoint(registry string) string {
	switch registry {
	case Wildcard:
		return ""
	case DockerHub:
		return DockerHubEndpoint
	}
	return "https://" + registry
}

// HostDir is the directory name containerd looks up for registry (":port"
// becomes "_port_", the Wildcard becomes DefaultHostDir).
func HostDir(registry string) string {
	if registry == Wildcard {
		return DefaultHostDir
	}
	if i := strings.LastIndex(registry, ":"); i > 0 {
		return registry[:i] + "_" + registry[i+1:] + "_"
	}
	return registry
}

// WriteHostDirs replaces the contents of dir (containerd's CRI registry
// config_path) with one <host>/hosts.toml per registry r configures:
//   - a mirrored registry: its endpoints in order, then the registry itself;
//     a mirror with rewrites lists only the registry itself, because its
//     endpoints are reached through the rewriting image proxy (RewriteDir);
//   - a host with TLS settings but no mirror entry: those settings for pulls
//     from the host itself.
//
// Files are 0600 in 0700 directories; no credentials are written (they go
// to the CRI plugin's configuration, in memory).
func (r Registries) WriteHostDirs(dir string) error {
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("registry host directory %s: %w", dir, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("registry host directory %s: %w", dir, err)
	}
	for _, registry := range sortedKeys(r.Mirrors) {
		m := r.Mirrors[registry]
		server := hostEntry{url: defaultEndpoint(registry), tls: r.tlsFor(registry)}
		var hosts []hostEntry
		if len(m.Rewrites) == 0 {
			for _, e := range m.Endpoints {
				if h := r.endpointEntry(e); h.url != server.url+"/v2" {
					hosts = append(hosts, h)
				}
			}
		}
		if err := r.writeHostsFile(filepath.Join(dir, HostDir(registry)), registry, server, hosts); err != nil {
			return err
		}
	}
	for _, host := range sortedKeys(r.Configs) {
		if _, mirrored := r.Mirrors[host]; mirrored || host == Wildcard || r.Configs[host].TLS == nil {
			continue
		}
		server := hostEntry{url: defaultEndpoint(host), tls: r.Configs[host].TLS}
		if err := r.writeHostsFile(filepath.Join(dir, HostDir(host)), host, server, nil); err != nil {
			return err
		}
	}
	return nil
}

// RewriteHost is the registry name under which the image proxy pulls the
// rewritten name of an image of registry: a name in .invalid (RFC 2606),
// which resolves nowhere and whose host directory lists only the mirror's
// endpoints.
func RewriteHost(registry string) string {
	return strings.ReplaceAll(registry, ":", "-") + ".kedge-rewrite.invalid"
}

// WriteRewriteDir writes the host directory of RewriteHost(registry) under
// dir: the endpoints of the registry's mirror, the last of them as the
// server, so that containerd asks nothing else.
func (r Registries) WriteRewriteDir(dir, registry string) error {
	m, ok := r.mirrorFor(registry)
	if !ok || len(m.Endpoints) == 0 {
		return fmt.Errorf("registry %s has no mirror endpoints", registry)
	}
	var hosts []hostEntry
	for _, e := range m.Endpoints {
		hosts = append(hosts, r.endpointEntry(e))
	}
	return r.writeHostsFile(filepath.Join(dir, HostDir(RewriteHost(registry))), registry+" (rewritten names)", hosts[len(hosts)-1], hosts[:len(hosts)-1])
}

func (r Registries) writeHostsFile(dir, what string, server hostEntry, hosts []hostEntry) error {
	var b bytes.Buffer
	src := r.File
	if src == "" {
		src = "registries.yaml"
	}
	fmt.Fprintf(&b, "# %s: written by kedge from %s on every start; edit that file, not this one.\n", what, src)
	if server.url != "" {
		fmt.Fprintf(&b, "server = %s\n", tomlString(server.url))
	}
	writeHostSettings(&b, server, "")
	for _, h := range hosts {
		fmt.Fprintf(&b, "\n[host.%s]\n", tomlString(h.url))
		writeHostSettings(&b, h, "  ")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("registry host directory %s: %w", dir, err)
	}
	path := filepath.Join(dir, HostsFile)
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		return fmt.Errorf("registry host file %s: %w", path, err)
	}
	return nil
}

func writeHostSettings(b *bytes.Buffer, h hostEntry, indent string) {
	if h.mirror {
		fmt.Fprintf(b, "%scapabilities = [\"pull\", \"resolve\"]\n", indent)
	}
	if h.overridePath {
		fmt.Fprintf(b, "%soverride_path = true\n", indent)
	}
	if t := h.tls; t != nil {
		if t.CAFile != "" {
			fmt.Fprintf(b, "%sca = %s\n", indent, tomlString(t.CAFile))
		}
		if t.CertFile != "" {
			fmt.Fprintf(b, "%sclient = [[%s, %s]]\n", indent, tomlString(t.CertFile), tomlString(t.KeyFile))
		}
		if t.InsecureSkipVerify {
			fmt.Fprintf(b, "%sskip_verify = true\n", indent)
		}
	}
}

// tomlString quotes s as a TOML basic string.
func tomlString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, c := range s {
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteRune(c)
		case c < 0x20 || c == 0x7f:
			fmt.Fprintf(&b, "\\u%04X", c)
		default:
			b.WriteRune(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}
