package cli

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// parseServerFlags registers the server flags on a fresh FlagSet and parses
// cmdline, as cobra would before RunE.
func parseServerFlags(t *testing.T, cmdline ...string) (*serverFlags, *pflag.FlagSet) {
	t.Helper()
	f := &serverFlags{}
	fs := pflag.NewFlagSet("server", pflag.ContinueOnError)
	f.register(fs)
	if err := fs.Parse(cmdline); err != nil {
		t.Fatalf("parse %q: %v", cmdline, err)
	}
	return f, fs
}

// writeFiles writes name → content below dir, creating directories.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func TestApplyConfigFile(t *testing.T) {
	cases := []struct {
		name     string
		files    map[string]string // relative to the temp dir; the config is "config.yaml"
		cmdline  []string
		config   string // default "config.yaml"
		required bool
		// wantErr are substrings of the error; "$DIR" is replaced by the temp dir.
		wantErr []string
		check   func(t *testing.T, f *serverFlags)
	}{
		{
			name: "missing default file is fine and leaves the defaults",
			check: func(t *testing.T, f *serverFlags) {
				if f.clusterCIDR != "10.42.0.0/16" || f.httpsPort != 6443 || f.tlsSANs != nil {
					t.Errorf("defaults changed: cluster-cidr %q port %d tls-san %q", f.clusterCIDR, f.httpsPort, f.tlsSANs)
				}
			},
		},
		{
			name:     "missing explicitly named file is an error naming --config",
			config:   "nope.yaml",
			required: true,
			wantErr:  []string{"--config", "$DIR/nope.yaml"},
		},
		{
			name: "scalars of every type",
			files: map[string]string{"config.yaml": `
cluster-cidr: 10.50.0.0/16
https-listen-port: 7443
disable-agent: true
node-name: "node-1"
cluster-domain: example.internal
`},
			check: func(t *testing.T, f *serverFlags) {
				if f.clusterCIDR != "10.50.0.0/16" || f.httpsPort != 7443 || !f.disableAgent ||
					f.nodeName != "node-1" || f.clusterDomain != "example.internal" {
					t.Errorf("got cluster-cidr %q port %d disable-agent %v node-name %q domain %q",
						f.clusterCIDR, f.httpsPort, f.disableAgent, f.nodeName, f.clusterDomain)
				}
			},
		},
		{
			name:  "unquoted octal mode stays as written (not YAML 1.1 integer 420)",
			files: map[string]string{"config.yaml": "write-kubeconfig-mode: 0644\n"},
			check: func(t *testing.T, f *serverFlags) {
				if f.kubeconfigMode != "0644" {
					t.Errorf("write-kubeconfig-mode = %q, want 0644", f.kubeconfigMode)
				}
			},
		},
		{
			name:  "quoted octal mode",
			files: map[string]string{"config.yaml": `write-kubeconfig-mode: "0640"` + "\n"},
			check: func(t *testing.T, f *serverFlags) {
				if f.kubeconfigMode != "0640" {
					t.Errorf("write-kubeconfig-mode = %q, want 0640", f.kubeconfigMode)
				}
			},
		},
		{
			name:  "YAML 1.1 boolean spelling for a bool flag",
			files: map[string]string{"config.yaml": "disable-agent: yes\ndebug: off\n"},
			check: func(t *testing.T, f *serverFlags) {
				if !f.disableAgent || f.debug {
					t.Errorf("disable-agent %v debug %v, want true false", f.disableAgent, f.debug)
				}
			},
		},
		{
			name:  "empty file",
			files: map[string]string{"config.yaml": ""},
			check: func(t *testing.T, f *serverFlags) {
				if f.clusterCIDR != "10.42.0.0/16" {
					t.Errorf("cluster-cidr %q", f.clusterCIDR)
				}
			},
		},
		{
			name: "lists for slice flags",
			files: map[string]string{"config.yaml": `
tls-san:
  - kedge.example.com
  - 10.0.0.1
kube-apiserver-arg: ["profiling=true", "v=2"]
etcd-arg: [quota-backend-bytes=4294967296]
`},
			check: func(t *testing.T, f *serverFlags) {
				wantSlice(t, "tls-san", f.tlsSANs, "kedge.example.com", "10.0.0.1")
				wantSlice(t, "kube-apiserver-arg", f.apiserverArgs, "profiling=true", "v=2")
				wantSlice(t, "etcd-arg", f.etcdArgs, "quota-backend-bytes=4294967296")
			},
		},
		{
			name:  "scalars for slice flags",
			files: map[string]string{"config.yaml": "tls-san: kedge.example.com\nkube-apiserver-arg: profiling=true\n"},
			check: func(t *testing.T, f *serverFlags) {
				wantSlice(t, "tls-san", f.tlsSANs, "kedge.example.com")
				wantSlice(t, "kube-apiserver-arg", f.apiserverArgs, "profiling=true")
			},
		},
		{
			name:  "a scalar with a comma is one kube-apiserver-arg (string array, no CSV split)",
			files: map[string]string{"config.yaml": "kube-apiserver-arg: enable-admission-plugins=A,B\n"},
			check: func(t *testing.T, f *serverFlags) {
				wantSlice(t, "kube-apiserver-arg", f.apiserverArgs, "enable-admission-plugins=A,B")
			},
		},
		{
			name: "command line wins over the file",
			files: map[string]string{"config.yaml": `
cluster-cidr: 10.60.0.0/16
tls-san: [from-file]
kube-apiserver-arg: [profiling=true]
service-cidr: 10.61.0.0/16
`},
			cmdline: []string{"--cluster-cidr=10.50.0.0/16", "--tls-san=from-cli", "--kube-apiserver-arg=v=4"},
			check: func(t *testing.T, f *serverFlags) {
				if f.clusterCIDR != "10.50.0.0/16" {
					t.Errorf("cluster-cidr %q, want the command line's", f.clusterCIDR)
				}
				if f.serviceCIDR != "10.61.0.0/16" {
					t.Errorf("service-cidr %q, want the file's", f.serviceCIDR)
				}
				wantSlice(t, "tls-san", f.tlsSANs, "from-cli")
				wantSlice(t, "kube-apiserver-arg", f.apiserverArgs, "v=4")
			},
		},
		{
			name: "drop-ins apply in lexical order and override the main file",
			files: map[string]string{
				"config.yaml":           "cluster-cidr: 10.60.0.0/16\nnode-name: main\ntls-san: [main]\n",
				"config.yaml.d/20.yaml": "cluster-cidr: 10.62.0.0/16\n",
				"config.yaml.d/10.yaml": "cluster-cidr: 10.61.0.0/16\nservice-cidr: 10.70.0.0/16\ntls-san: [drop-in]\n",
				"config.yaml.d/30.yml":  "cluster-cidr: 10.99.0.0/16\n", // not *.yaml: ignored
				"config.yaml.d/README":  "not: yaml: at: all: [",
			},
			check: func(t *testing.T, f *serverFlags) {
				if f.clusterCIDR != "10.62.0.0/16" {
					t.Errorf("cluster-cidr %q, want the last drop-in's 10.62.0.0/16", f.clusterCIDR)
				}
				if f.serviceCIDR != "10.70.0.0/16" || f.nodeName != "main" {
					t.Errorf("service-cidr %q node-name %q", f.serviceCIDR, f.nodeName)
				}
				wantSlice(t, "tls-san", f.tlsSANs, "drop-in")
			},
		},
		{
			name:  "drop-ins apply without a main file",
			files: map[string]string{"config.yaml.d/10.yaml": "node-name: only-drop-in\n"},
			check: func(t *testing.T, f *serverFlags) {
				if f.nodeName != "only-drop-in" {
					t.Errorf("node-name %q", f.nodeName)
				}
			},
		},
		{
			name:    "unknown key names the key and the file",
			files:   map[string]string{"config.yaml": "cluster-cidr: 10.42.0.0/16\nclustr-cidr: 10.50.0.0/16\n"},
			wantErr: []string{"$DIR/config.yaml", `"clustr-cidr"`, "unknown key"},
		},
		{
			name:    "unknown key in a drop-in names the drop-in",
			files:   map[string]string{"config.yaml": "node-name: a\n", "config.yaml.d/50.yaml": "bogus: 1\n"},
			wantErr: []string{"$DIR/config.yaml.d/50.yaml", `"bogus"`},
		},
		{
			name:    "config is not a config file key",
			files:   map[string]string{"config.yaml": "config: /elsewhere.yaml\n"},
			wantErr: []string{"$DIR/config.yaml", `"config"`, "unknown key"},
		},
		{
			name:    "malformed YAML names the file",
			files:   map[string]string{"config.yaml": "cluster-cidr: [10.42.0.0/16\n"},
			wantErr: []string{"$DIR/config.yaml", "malformed YAML"},
		},
		{
			name:    "top level must be a mapping",
			files:   map[string]string{"config.yaml": "- cluster-cidr\n"},
			wantErr: []string{"$DIR/config.yaml", "malformed YAML"},
		},
		{
			name:    "duplicate key in one file",
			files:   map[string]string{"config.yaml": "node-name: a\nnode-name: b\n"},
			wantErr: []string{"$DIR/config.yaml", "node-name"},
		},
		{
			name:    "mapping where a string is expected names the key",
			files:   map[string]string{"config.yaml": "node-name:\n  first: a\n"},
			wantErr: []string{"$DIR/config.yaml", `key "node-name"`, "mapping"},
		},
		{
			name:    "list where a string is expected names the key",
			files:   map[string]string{"config.yaml": "cluster-cidr: [10.42.0.0/16]\n"},
			wantErr: []string{`key "cluster-cidr"`, "list"},
		},
		{
			name:    "mapping inside a slice flag's list names the key",
			files:   map[string]string{"config.yaml": "tls-san:\n  - a: b\n"},
			wantErr: []string{`key "tls-san"`, "mapping"},
		},
		{
			name:    "value the flag rejects names the key",
			files:   map[string]string{"config.yaml": "https-listen-port: https\n"},
			wantErr: []string{"$DIR/config.yaml", `key "https-listen-port"`},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFiles(t, dir, tc.files)
			f, fs := parseServerFlags(t, tc.cmdline...)
			config := tc.config
			if config == "" {
				config = "config.yaml"
			}
			err := applyConfigFile(fs, filepath.Join(dir, config), tc.required)
			if len(tc.wantErr) > 0 {
				if err == nil {
					t.Fatalf("no error, want one containing %q", tc.wantErr)
				}
				for _, w := range tc.wantErr {
					if w = strings.ReplaceAll(w, "$DIR", dir); !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not contain %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			tc.check(t, f)
		})
	}
}

// TestApplyConfigFileThenValidate checks that values from a file reach the
// validated configuration like command-line values do.
func TestApplyConfigFileThenValidate(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"config.yaml": `
node-name: node-1
node-ip: 192.0.2.10
write-kubeconfig-mode: 0644
tls-san: [kedge.example.com]
flannel-backend: host-gw
`})
	f, fs := parseServerFlags(t)
	if err := applyConfigFile(fs, filepath.Join(dir, "config.yaml"), true); err != nil {
		t.Fatal(err)
	}
	c, err := f.serverConfig(testExec)
	if err != nil {
		t.Fatal(err)
	}
	if c.KubeconfigMode != 0o644 {
		t.Errorf("KubeconfigMode = %o, want 644", c.KubeconfigMode)
	}
	if c.NodeName != "node-1" || c.NodeIP.String() != "192.0.2.10" || !reflect.DeepEqual(c.TLSSANs, []string{"kedge.example.com"}) {
		t.Errorf("got node %q ip %s sans %q", c.NodeName, c.NodeIP, c.TLSSANs)
	}
	if c.FlannelBackend != "host-gw" {
		t.Errorf("FlannelBackend = %q, want host-gw", c.FlannelBackend)
	}
}

func wantSlice(t *testing.T, flag string, got []string, want ...string) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s = %q, want %q", flag, got, want)
	}
}
