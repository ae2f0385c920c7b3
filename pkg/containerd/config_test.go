package containerd

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/plugin"
	"github.com/containerd/plugin/registry"
	"github.com/pelletier/go-toml/v2"

	"github.com/kedge-io/kedge/pkg/hostinfo"
	"github.com/kedge-io/kedge/pkg/registries"
)

func testConfig(host hostinfo.Host) Config {
	return Config{
		Root:         "/var/lib/kedge/agent/containerd",
		State:        "/run/kedge/containerd",
		Address:      "/run/kedge/containerd/containerd.sock",
		BinDir:       "/var/lib/kedge/data/abc/bin",
		CNIBinDir:    "/var/lib/kedge/data/abc/bin",
		CNIConfDir:   "/var/lib/kedge/agent/etc/cni/net.d",
		RegistryDir:  "/var/lib/kedge/agent/etc/containerd/certs.d",
		SandboxImage: "kedge.local/pause:1.0",
		Host:         host,
		Log:          slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

// decoded decodes Render's section for a plugin into that plugin's own
// configuration type, strictly (an unknown key fails), and returns it as JSON
// (the CRI types' JSON names) in a generic map.
func decoded(t *testing.T, section any, uri string) map[string]any {
	t.Helper()
	var reg *plugin.Registration
	for _, r := range registry.Graph(func(*plugin.Registration) bool { return false }) {
		if r.URI() == uri {
			reg = &r
		}
	}
	if reg == nil || reg.Config == nil {
		t.Fatalf("plugin %s is not registered with a configuration", uri)
	}
	raw, err := toml.Marshal(section)
	if err != nil {
		t.Fatalf("%s: marshal: %v", uri, err)
	}
	v := reflect.New(reflect.TypeOf(reg.Config).Elem()).Interface()
	if err := toml.NewDecoder(bytes.NewReader(raw)).DisallowUnknownFields().Decode(v); err != nil {
		t.Fatalf("%s: containerd's configuration type rejects kedge's section: %v\n%s", uri, err, raw)
	}
	js, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal(js, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// at walks a JSON map along keys.
func at(t *testing.T, m map[string]any, keys ...string) any {
	t.Helper()
	var v any = m
	for _, k := range keys {
		mm, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("%s: not an object at %q", strings.Join(keys, "."), k)
		}
		v = mm[k]
	}
	return v
}

func TestRender(t *testing.T) {
	cases := []struct {
		name          string
		host          hostinfo.Host
		snapshotter   string
		wantRestrict  bool
		wantSystemd   bool
		overlayLoaded bool
	}{
		{"container without CAP_SYS_RESOURCE, cgroupfs", hostinfo.Host{CgroupV1: true}, SnapshotterOverlay, true, false, true},
		{"systemd host with CAP_SYS_RESOURCE", hostinfo.Host{Systemd: true, CanRaiseOOMPriority: true}, SnapshotterOverlay, false, true, true},
		{"no overlayfs", hostinfo.Host{CanRaiseOOMPriority: true}, SnapshotterNative, false, false, false},
		{"seccomp refuses keyctl", hostinfo.Host{CanRaiseOOMPriority: true, KeyringRefused: true}, SnapshotterOverlay, false, false, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(tc.host)
			c := Render(cfg, tc.snapshotter)
			if c.Version != 4 || c.Root != cfg.Root || c.State != cfg.State {
				t.Errorf("version/root/state = %d %s %s", c.Version, c.Root, c.State)
			}
			if err := c.ValidateVersion(); err != nil {
				t.Errorf("ValidateVersion: %v", err)
			}
			if !slices.Equal(c.RequiredPlugins, []string{"io.containerd.grpc.v1.cri"}) {
				t.Errorf("required plugins = %v", c.RequiredPlugins)
			}
			if got := slices.Contains(c.DisabledPlugins, "io.containerd.snapshotter.v1.overlayfs"); got == tc.overlayLoaded {
				t.Errorf("overlayfs disabled = %v with snapshotter %s", got, tc.snapshotter)
			}

			rt := decoded(t, c.Plugins["io.containerd.cri.v1.runtime"], "io.containerd.cri.v1.runtime")
			if got := at(t, rt, "restrictOOMScoreAdj"); got != tc.wantRestrict {
				t.Errorf("restrict_oom_score_adj = %v, want %v", got, tc.wantRestrict)
			}
			if got := at(t, rt, "containerd", "defaultRuntimeName"); got != "runc" {
				t.Errorf("default runtime = %v", got)
			}
			runc := []string{"containerd", "runtimes", "runc"}
			if got := at(t, rt, append(runc, "runtimeType")...); got != RuntimeType {
				t.Errorf("runc runtime type = %v", got)
			}
			if got := at(t, rt, append(runc, "sandboxer")...); got != "podsandbox" {
				t.Errorf("runc sandboxer = %v", got)
			}
			if got := at(t, rt, append(runc, "options", "SystemdCgroup")...); got != tc.wantSystemd {
				t.Errorf("SystemdCgroup = %v, want %v", got, tc.wantSystemd)
			}
			if got := at(t, rt, append(runc, "options", "NoNewKeyring")...); got != tc.host.KeyringRefused {
				t.Errorf("NoNewKeyring = %v, want %v", got, tc.host.KeyringRefused)
			}
			if got := at(t, rt, append(runc, "options", "BinaryName")...); got != cfg.BinDir+"/runc" {
				t.Errorf("BinaryName = %v", got)
			}
			if got := at(t, rt, append(runc, "options", "Root")...); got != "/run/kedge/containerd/runc" {
				t.Errorf("runc root = %v", got)
			}
			if got := at(t, rt, "cni", "binDirs"); !reflect.DeepEqual(got, []any{cfg.CNIBinDir}) {
				t.Errorf("cni bin dirs = %v", got)
			}
			if got := at(t, rt, "cni", "confDir"); got != cfg.CNIConfDir {
				t.Errorf("cni conf dir = %v", got)
			}

			img := decoded(t, c.Plugins["io.containerd.cri.v1.images"], "io.containerd.cri.v1.images")
			if got := at(t, img, "pinned_images", "sandbox"); got != cfg.SandboxImage {
				t.Errorf("sandbox image = %v", got)
			}
			if got := at(t, img, "snapshotter"); got != tc.snapshotter {
				t.Errorf("CRI snapshotter = %v, want %s", got, tc.snapshotter)
			}
			if got := at(t, img, "registry", "configPath"); got != cfg.RegistryDir {
				t.Errorf("registry config_path = %v, want %s", got, cfg.RegistryDir)
			}
			if got := at(t, img, "registry", "configs"); got != nil {
				t.Errorf("registry configs without registries.yaml: %v", got)
			}

			tr, _ := toml.Marshal(c.Plugins["io.containerd.transfer.v1.local"])
			if !strings.Contains(string(tr), "snapshotter = '"+tc.snapshotter+"'") {
				t.Errorf("transfer unpack config does not use %s:\n%s", tc.snapshotter, tr)
			}
			decoded(t, c.Plugins["io.containerd.transfer.v1.local"], "io.containerd.transfer.v1.local")

			grpc := decoded(t, c.Plugins["io.containerd.server.v1.grpc"], "io.containerd.server.v1.grpc")
			ttrpc := decoded(t, c.Plugins["io.containerd.server.v1.ttrpc"], "io.containerd.server.v1.ttrpc")
			if grpc["Address"] != cfg.Address || ttrpc["Address"] != cfg.Address+".ttrpc" {
				t.Errorf("addresses: grpc %v ttrpc %v", grpc["Address"], ttrpc["Address"])
			}
			if m := decoded(t, c.Plugins["io.containerd.monitor.task.v1.cgroups"], "io.containerd.monitor.task.v1.cgroups"); m["NoPrometheus"] != true {
				t.Errorf("cgroups monitor registers Prometheus metrics: %v", m)
			}
			shim := decoded(t, c.Plugins["io.containerd.shim.v1.manager"], "io.containerd.shim.v1.manager")
			if shim["SocketDir"] != "/run/kedge/containerd/s" {
				t.Errorf("shim socket dir = %v", shim["SocketDir"])
			}
		})
	}
}

// TestRenderRegistryAuth: credentials of registries.yaml reach the CRI
// plugin's registry.configs, which containerd's own type accepts.
func TestRenderRegistryAuth(t *testing.T) {
	cfg := testConfig(hostinfo.Host{})
	regs, err := registries.Parse([]byte(`
mirrors:
  registry.example.test:
    endpoint: ["https://127.0.0.1:5000"]
configs:
  "127.0.0.1:5000":
    auth: {username: kedge, password: s3cret}
  ghcr.io:
    auth: {identitytoken: tok}
`))
	mustf(t, err, "parse")
	cfg.Registries = regs
	img := decoded(t, Render(cfg, SnapshotterOverlay).Plugins["io.containerd.cri.v1.images"], "io.containerd.cri.v1.images")
	if got := at(t, img, "registry", "configs", "127.0.0.1:5000", "auth"); !reflect.DeepEqual(got, map[string]any{
		"username": "kedge", "password": "s3cret", "auth": "", "identitytoken": "",
	}) {
		t.Errorf("auth of 127.0.0.1:5000 = %v", got)
	}
	if got := at(t, img, "registry", "configs", "ghcr.io", "auth", "identitytoken"); got != "tok" {
		t.Errorf("identity token of ghcr.io = %v", got)
	}
	if got := at(t, img, "registry", "configPath"); got != cfg.RegistryDir {
		t.Errorf("config_path = %v", got)
	}
}

func TestRenderLongStateKeepsDefaultShimSocketDir(t *testing.T) {
	cfg := testConfig(hostinfo.Host{})
	cfg.State = "/run/a-very-long-state-directory-for-kedge/containerd"
	shim := Render(cfg, SnapshotterOverlay).Plugins["io.containerd.shim.v1.manager"].(map[string]any)
	if _, ok := shim["socket_dir"]; ok {
		t.Fatalf("socket_dir set for a state dir past containerd's limit: %v", shim)
	}
}

// TestDisabledPluginsExist guards against typos and upstream renames: a
// disabled URI that matches no plugin silently disables nothing.
func TestDisabledPluginsExist(t *testing.T) {
	known := map[string]bool{}
	for _, r := range registry.Graph(func(*plugin.Registration) bool { return false }) {
		known[r.URI()] = true
	}
	// Plugins a build can leave out: btrfs needs cgo, and the Makefile's
	// TAGS (no_btrfs no_zfs no_devmapper no_tracing) compile these out.
	compiledOut := map[string]bool{
		"io.containerd.snapshotter.v1.btrfs":      true,
		"io.containerd.snapshotter.v1.zfs":        true,
		"io.containerd.snapshotter.v1.devmapper":  true,
		"io.containerd.internal.v1.tracing":       true,
		"io.containerd.tracing.processor.v1.otlp": true,
		"io.containerd.ttrpc.v1.otelttrpc":        true,
	}
	// Plugins plugins.go does not link (leftOut): disabled all the same.
	for _, uri := range leftOut {
		compiledOut[uri] = true
	}
	for _, uri := range DisabledPlugins(SnapshotterNative) {
		if !known[uri] && !compiledOut[uri] {
			t.Errorf("disabled plugin %s is not registered", uri)
		}
	}
	for _, uri := range []string{"io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.native"} {
		if slices.Contains(DisabledPlugins(SnapshotterNative), uri) {
			t.Errorf("%s must stay enabled", uri)
		}
	}
}

func TestValidate(t *testing.T) {
	good := testConfig(hostinfo.Host{})
	if err := good.validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	cases := map[string]func(*Config){
		"Root":         func(c *Config) { c.Root = "relative" },
		"must differ":  func(c *Config) { c.State = c.Root },
		"longer than":  func(c *Config) { c.Address = "/" + strings.Repeat("x", 101) },
		"SandboxImage": func(c *Config) { c.SandboxImage = "" },
		"CNIConfDir":   func(c *Config) { c.CNIConfDir = "" },
		"RegistryDir":  func(c *Config) { c.RegistryDir = "certs.d" },
	}
	for want, mutate := range cases {
		c := good
		mutate(&c)
		if err := c.validate(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: validate() = %v", want, err)
		}
	}
}

func TestPathWith(t *testing.T) {
	cases := []struct{ path, dir, want string }{
		{"/usr/bin:/bin", "/k/bin", "/k/bin:/usr/bin:/bin"},
		{"/usr/bin:/k/bin:/bin", "/k/bin", "/k/bin:/usr/bin:/bin"},
		{"", "/k/bin", "/k/bin"},
	}
	for _, tc := range cases {
		if got := pathWith(tc.path, tc.dir); got != tc.want {
			t.Errorf("pathWith(%q, %q) = %q, want %q", tc.path, tc.dir, got, tc.want)
		}
	}
}

func TestFullReference(t *testing.T) {
	cases := map[string]string{
		"1.0":                   "",
		"latest":                "",
		"kedge.local/pause:1.0": "kedge.local/pause:1.0",
		"busybox:1.36":          "docker.io/library/busybox:1.36",
		"Bad/Name:x":            "",
	}
	for in, want := range cases {
		if got := fullReference(in); got != want {
			t.Errorf("fullReference(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestIsImageArchive(t *testing.T) {
	for name, want := range map[string]bool{
		"a.tar": true, "a.tar.zst": true, "a.tar.gz": true, "a.tgz": false, ".imported.json": false, "a.tar.tmp": false,
	} {
		if isImageArchive(name) != want {
			t.Errorf("isImageArchive(%q) != %v", name, want)
		}
	}
}
