package cli

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/kedge-io/kedge/pkg/server"
)

// TestNodeMetaAndDisableFlags: --node-label, --node-taint and --disable
// from the command line and config.yaml, and their errors naming the flag.
func TestNodeMetaAndDisableFlags(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"config.yaml": "node-name: n1\nnode-ip: 192.0.2.10\nnode-label:\n  - site=north\n  - example.com/team=edge\nnode-taint: dedicated=edge:NoSchedule\ndisable: [coredns]\n", "empty.yaml": ""})
	var got server.Config
	cmd := newServerCommand(testExec, func(c server.Config, _ bool) error { got = c; return nil })
	cmd.SetArgs([]string{"-c", filepath.Join(dir, "config.yaml"), "--data-dir", dir})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"site": "north", "example.com/team": "edge"}; !reflect.DeepEqual(got.NodeMeta.Labels, want) {
		t.Errorf("labels = %v, want %v", got.NodeMeta.Labels, want)
	}
	if len(got.NodeMeta.Taints) != 1 || got.NodeMeta.Taints[0].ToString() != "dedicated=edge:NoSchedule" {
		t.Errorf("taints = %v", got.NodeMeta.Taints)
	}
	if !reflect.DeepEqual(got.Disable, []string{"coredns"}) {
		t.Errorf("disable = %v", got.Disable)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--disable", "traefik"}, `--disable "traefik": not a built-in add-on; want one of coredns`},
		{[]string{"--node-label", "novalue"}, `--node-label "novalue"`},
		{[]string{"--node-taint", "k=v:Never"}, `--node-taint "k=v:Never"`},
	} {
		cmd := newServerCommand(testExec, func(server.Config, bool) error { return nil })
		cmd.SetArgs(append([]string{"--config", filepath.Join(dir, "empty.yaml"), "--node-name", "n1", "--node-ip", "192.0.2.10", "--data-dir", dir}, tc.args...))
		cmd.SetOut(&strings.Builder{})
		cmd.SetErr(&strings.Builder{})
		if err := cmd.Execute(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err = %v, want %q", tc.args, err, tc.want)
		}
	}

	// An agent may not give itself the administrator's labels.
	f := &agentFlags{}
	fs := pflag.NewFlagSet("agent", pflag.ContinueOnError)
	f.register(fs)
	_ = fs.Parse([]string{"--server", "https://10.0.0.1:6443", "--token", "s3cret", "--node-ip", "192.0.2.9", "--node-name", "a1",
		"--node-label", "node-role.kubernetes.io/worker=true", "--node-taint", "gpu:NoSchedule"})
	c, err := f.agentConfig()
	if err != nil || c.NodeMeta.Labels["node-role.kubernetes.io/worker"] != "true" || len(c.NodeMeta.Taints) != 1 {
		t.Errorf("agent labels: %+v, %v", c.NodeMeta, err)
	}
	f = &agentFlags{}
	fs = pflag.NewFlagSet("agent", pflag.ContinueOnError)
	f.register(fs)
	_ = fs.Parse([]string{"--server", "https://10.0.0.1:6443", "--token", "s3cret", "--node-ip", "192.0.2.9", "--node-name", "a1",
		"--node-label", "node-role.kubernetes.io/control-plane=true"})
	if _, err := f.agentConfig(); err == nil || !strings.Contains(err.Error(), "--node-label node-role.kubernetes.io/control-plane") {
		t.Errorf("agent with the control-plane label: err = %v", err)
	}
}
