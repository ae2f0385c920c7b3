package cli

import (
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func TestAgentFlagValidation(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--token", "s3cret"}, "--server"},
		{[]string{"--server", "http://10.0.0.1:6443", "--token", "s3cret"}, "--server"},
		{[]string{"--server", "https://10.0.0.1:6443"}, "--token"},
		{[]string{"--server", "https://10.0.0.1:6443", "--token", "KEDGE1zz::x"}, "--token"},
		{[]string{"--server", "https://10.0.0.1:6443", "--token", "s3cret", "--node-ip", "nope"}, "--node-ip"},
		{[]string{"--server", "https://10.0.0.1:6443", "--token", "s3cret", "--node-ip", "127.0.0.1"}, "--node-ip"},
		{[]string{"--server", "https://10.0.0.1:6443", "--token", "s3cret", "--node-ip", "192.0.2.9", "--node-name", "Bad_Name"}, "--node-name"},
		{[]string{"--server", "https://10.0.0.1:6443", "--token", "s3cret", "--node-ip", "192.0.2.9", "--kubelet-arg", "novalue"}, "--kubelet-arg"},
		{[]string{"--server", "https://10.0.0.1:6443", "--token", "s3cret", "--default-local-storage-path", "/"}, "--default-local-storage-path"},
	}
	for _, tc := range cases {
		f := &agentFlags{}
		fs := pflag.NewFlagSet("agent", pflag.ContinueOnError)
		f.register(fs)
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		if _, err := f.agentConfig(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err = %v, want one naming %s", tc.args, err, tc.want)
		}
	}
	f := &agentFlags{}
	fs := pflag.NewFlagSet("agent", pflag.ContinueOnError)
	f.register(fs)
	_ = fs.Parse([]string{"--server", "https://10.0.0.1:6443", "--token", "s3cret", "--node-ip", "192.0.2.9", "--node-name", "Edge-1", "--data-dir", "rel"})
	c, err := f.agentConfig()
	if err != nil || c.NodeName != "edge-1" || !strings.HasSuffix(c.DataDir, "/rel") || c.NodeIP.String() != "192.0.2.9" || c.LocalStorage != c.DataDir+"/storage" {
		t.Fatalf("good flags: %+v, %v", c, err)
	}
}
