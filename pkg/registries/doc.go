// Package registries reads a node's registries.yaml (k3s's format: mirrors
// with endpoints and rewrites, per-host credentials and TLS) and turns it
// into what containerd 2.3 reads: one hosts.toml per registry under the CRI
// plugin's config_path, and the credentials for the CRI plugin's
// configuration (in memory, never on disk).
//
//	regs, err := registries.Load("/etc/kedge/registries.yaml", false)
//	if err != nil { ... }                   // names the file and the key
//	err = regs.WriteHostDirs(certsDir)      // <certsDir>/<host>/hosts.toml, 0600
//	auths := regs.Auths()                   // host → credentials, for the CRI plugin
//
// containerd has no repository rewrites: when a mirror has them, the node
// runs an ImageProxy, the kubelet's image service, which pulls those images
// under a rewritten name through the mirror's endpoints and names them as
// asked.
package registries
