package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kedge-io/kedge/pkg/flannel"
	"github.com/kedge-io/kedge/pkg/hostinfo"
	"github.com/kedge-io/kedge/pkg/server"
	"github.com/kedge-io/kedge/pkg/version"
)

var testExec = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

func TestServerConfigErrors(t *testing.T) {
	cases := []struct {
		name    string
		cmdline []string
		want    []string // substrings of the error; the first names the flag
	}{
		{"invalid cluster-cidr", []string{"--cluster-cidr=bogus"}, []string{"--cluster-cidr", "bogus"}},
		{"cluster-cidr without mask", []string{"--cluster-cidr=10.42.0.0"}, []string{"--cluster-cidr"}},
		{"invalid service-cidr", []string{"--service-cidr=10.43.0.0/33"}, []string{"--service-cidr", "10.43.0.0/33"}},
		{"service-cidr inside cluster-cidr", []string{"--cluster-cidr=10.0.0.0/8", "--service-cidr=10.43.0.0/16", "--cluster-dns=10.43.0.10"},
			[]string{"--cluster-cidr", "--service-cidr", "overlap"}},
		{"cluster-cidr inside service-cidr", []string{"--cluster-cidr=10.43.128.0/20", "--service-cidr=10.43.0.0/16"},
			[]string{"--cluster-cidr", "--service-cidr", "overlap"}},
		{"cluster-cidr smaller than a node's /24", []string{"--cluster-cidr=10.42.0.0/25"}, []string{"--cluster-cidr", "too small"}},
		{"IPv6 pool inside an IPv6 service-cidr", []string{"--cluster-cidr=fd00:42::/56", "--service-cidr=fd00:43::/112", "--cluster-dns=fd00:43::a", "--service-lb-pool=default=fd00:43::10-fd00:43::20"},
			[]string{"--service-lb-pool", "--service-cidr fd00:43::/112", "overlaps"}},
		{"IPv6 pool inside an IPv6 cluster-cidr", []string{"--cluster-cidr=fd00:42::/56", "--service-cidr=fd00:43::/112", "--cluster-dns=fd00:43::a", "--service-lb-pool=default=fd00:42:0:5::/120"},
			[]string{"--service-lb-pool", "--cluster-cidr fd00:42::/56", "overlaps"}},
		{"two IPv6 ranges of one pool", []string{"--service-lb-pool=default=2001:db8::/120", "--service-lb-pool=default=2001:db8:1::/120"},
			[]string{"--service-lb-pool", "given twice for one IP family"}},
		{"cluster-dns outside service-cidr", []string{"--cluster-dns=10.42.0.10"}, []string{"--cluster-dns", "--service-cidr"}},
		{"cluster-dns not an IP", []string{"--cluster-dns=dns"}, []string{"--cluster-dns", `"dns"`}},
		{"bad node-ip", []string{"--node-ip=1.2.3"}, []string{"--node-ip", `"1.2.3"`}},
		{"bad advertise-address", []string{"--advertise-address=host.example"}, []string{"--advertise-address"}},
		{"loopback node-ip", []string{"--node-ip=127.0.0.1"}, []string{"--node-ip", "127.0.0.1", "loopback"}},
		{"loopback advertise-address", []string{"--advertise-address=::1"}, []string{"--advertise-address", "::1"}},
		{"unspecified advertise-address", []string{"--advertise-address=0.0.0.0"}, []string{"--advertise-address", "0.0.0.0"}},
		{"bad bind-address", []string{"--bind-address=localhost"}, []string{"--bind-address", `"localhost"`}},
		{"local storage path /", []string{"--default-local-storage-path=/"}, []string{"--default-local-storage-path", "other than /"}},
		{"server not https", []string{"--server=http://10.0.0.1:6443", "--token=s3cret"}, []string{"--server", "https"}},
		{"server without token", []string{"--server=https://10.0.0.1:6443"}, []string{"--server", "--token"}},
		{"server and cluster-init", []string{"--server=https://10.0.0.1:6443", "--token=s3cret", "--cluster-init"}, []string{"--cluster-init", "--server"}},
		{"port 0", []string{"--https-listen-port=0"}, []string{"--https-listen-port", "0"}},
		{"port 70000", []string{"--https-listen-port=70000"}, []string{"--https-listen-port", "70000"}},
		{"kubeconfig mode not octal", []string{"--write-kubeconfig-mode=abc"}, []string{"--write-kubeconfig-mode", `"abc"`}},
		{"kubeconfig mode with sticky bit", []string{"--write-kubeconfig-mode=1777"}, []string{"--write-kubeconfig-mode", `"1777"`}},
		{"kubeconfig mode decimal digits", []string{"--write-kubeconfig-mode=0689"}, []string{"--write-kubeconfig-mode"}},
		{"empty write-kubeconfig", []string{"--write-kubeconfig="}, []string{"--write-kubeconfig"}},
		{"empty data-dir", []string{"--data-dir="}, []string{"--data-dir"}},
		{"node-name with underscore, even lowercased", []string{"--node-name=Bad_Name"}, []string{"--node-name", `"bad_name"`}},
		{"node-name too long", []string{"--node-name=" + strings.Repeat("a", 254)}, []string{"--node-name"}},
		{"empty tls-san", []string{"--tls-san=a.example,,b.example"}, []string{"--tls-san", `""`}},
		{"tls-san with a space", []string{"--tls-san=a b"}, []string{"--tls-san", `"a b"`}},
		{"tls-san with a slash", []string{"--tls-san=10.0.0.0/8"}, []string{"--tls-san"}},
		{"bad cluster-domain", []string{"--cluster-domain=Cluster_Local"}, []string{"--cluster-domain"}},
		{"kube-apiserver-arg without =", []string{"--kube-apiserver-arg=profiling"}, []string{"--kube-apiserver-arg", `"profiling"`, "key=value"}},
		{"kube-apiserver-arg with empty key", []string{"--kube-apiserver-arg=--=x"}, []string{"--kube-apiserver-arg"}},
		{"kube-controller-manager-arg without =", []string{"--kube-controller-manager-arg=v"}, []string{"--kube-controller-manager-arg"}},
		{"kube-scheduler-arg without =", []string{"--kube-scheduler-arg=v"}, []string{"--kube-scheduler-arg"}},
		{"etcd-arg without =", []string{"--etcd-arg=quota-backend-bytes"}, []string{"--etcd-arg"}},
		{"unknown flannel-backend", []string{"--flannel-backend=wireguard"}, []string{"--flannel-backend", `"wireguard"`, "vxlan, host-gw or none"}},
		{"empty flannel-backend", []string{"--flannel-backend="}, []string{"--flannel-backend"}},
		{"missing flannel-iface", []string{"--flannel-iface=kedge-nope0"}, []string{"--flannel-iface", `"kedge-nope0"`, "no such network interface"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// A valid node IP and name, so that only the flag under test is wrong
			// (the command line given later wins).
			cmdline := append([]string{"--node-ip=192.0.2.10", "--node-name=node-1"}, tc.cmdline...)
			f, _ := parseServerFlags(t, cmdline...)
			_, err := f.serverConfig(testExec)
			if err == nil {
				t.Fatalf("no error, want one naming %s", tc.want[0])
			}
			if !strings.HasPrefix(err.Error(), tc.want[0]) {
				t.Errorf("error %q does not start with the flag %s", err, tc.want[0])
			}
			for _, w := range tc.want[1:] {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestServerConfigDefaults(t *testing.T) {
	if ip := hostinfo.DefaultNodeIP(); ip.IsLoopback() {
		t.Skipf("no routable address on this machine (detected %s)", ip)
	}
	f, _ := parseServerFlags(t, "--node-name=Node-1")
	c, err := f.serverConfig(testExec)
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"DataDir", c.DataDir, "/var/lib/kedge"},
		{"HTTPSPort", c.HTTPSPort, 6443},
		{"BindAddress", c.BindAddress.String(), "0.0.0.0"},
		{"ClusterCIDR", c.ClusterCIDR.String(), "10.42.0.0/16"},
		{"ServiceCIDR", c.ServiceCIDR.String(), "10.43.0.0/16"},
		{"ClusterDNS", c.ClusterDNS.String(), "10.43.0.10"},
		{"ClusterDomain", c.ClusterDomain, "cluster.local"},
		{"Kubeconfig", c.Kubeconfig, "/etc/kedge/kedge.yaml"},
		{"KubeconfigMode", c.KubeconfigMode, os.FileMode(0o600)},
		{"NodeName lowercased", c.NodeName, "node-1"},
		{"DisableAgent", c.DisableAgent, false},
		{"Exec", c.Exec, testExec},
		{"TLSSANs", len(c.TLSSANs), 0},
		{"FlannelBackend", c.FlannelBackend, flannel.VXLAN},
		{"FlannelIface", c.FlannelIface, ""},
		{"APIServerArgs", len(c.APIServerArgs), 0},
		{"LocalStoragePath", c.LocalStoragePath, "/var/lib/kedge/storage"},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s = %v, want %v", ch.name, ch.got, ch.want)
		}
	}
	if c.NodeIP == nil {
		t.Fatal("NodeIP not detected")
	}
	if !c.AdvertiseIP.Equal(c.NodeIP) {
		t.Errorf("AdvertiseIP %s, want NodeIP %s when --advertise-address is unset", c.AdvertiseIP, c.NodeIP)
	}
}

func TestServerConfigValues(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		cmdline []string
		check   func(t *testing.T, c server.Config)
	}{
		{
			name:    "relative data-dir and write-kubeconfig are made absolute",
			cmdline: []string{"--data-dir=state/kedge", "--write-kubeconfig=kube/config"},
			check: func(t *testing.T, c server.Config) {
				if want := filepath.Join(wd, "state/kedge"); c.DataDir != want {
					t.Errorf("DataDir %q, want %q", c.DataDir, want)
				}
				if want := filepath.Join(wd, "kube/config"); c.Kubeconfig != want {
					t.Errorf("Kubeconfig %q, want %q", c.Kubeconfig, want)
				}
			},
		},
		{
			name:    "advertise-address overrides node-ip",
			cmdline: []string{"--node-ip=192.0.2.10", "--advertise-address=198.51.100.7"},
			check: func(t *testing.T, c server.Config) {
				if c.NodeIP.String() != "192.0.2.10" || c.AdvertiseIP.String() != "198.51.100.7" {
					t.Errorf("NodeIP %s AdvertiseIP %s", c.NodeIP, c.AdvertiseIP)
				}
			},
		},
		{
			name:    "advertise-address defaults to node-ip",
			cmdline: []string{"--node-ip=192.0.2.10"},
			check: func(t *testing.T, c server.Config) {
				if c.AdvertiseIP.String() != "192.0.2.10" {
					t.Errorf("AdvertiseIP %s", c.AdvertiseIP)
				}
			},
		},
		{
			name: "custom networks, port, mode and trailing dot of the domain",
			cmdline: []string{"--cluster-cidr=10.100.0.0/16", "--service-cidr=10.200.0.0/20", "--cluster-dns=10.200.0.53",
				"--https-listen-port=7443", "--write-kubeconfig-mode=644", "--cluster-domain=corp.example.", "--bind-address=::"},
			check: func(t *testing.T, c server.Config) {
				if c.ClusterCIDR.String() != "10.100.0.0/16" || c.ServiceCIDR.String() != "10.200.0.0/20" || c.ClusterDNS.String() != "10.200.0.53" {
					t.Errorf("networks %s %s %s", c.ClusterCIDR, c.ServiceCIDR, c.ClusterDNS)
				}
				if c.HTTPSPort != 7443 || c.KubeconfigMode != 0o644 || c.ClusterDomain != "corp.example" || c.BindAddress.String() != "::" {
					t.Errorf("port %d mode %o domain %q bind %s", c.HTTPSPort, c.KubeconfigMode, c.ClusterDomain, c.BindAddress)
				}
			},
		},
		{
			name:    "a pool with an IPv4 and an IPv6 range",
			cmdline: []string{"--service-lb-pool=default=192.0.2.240-192.0.2.250", "--service-lb-pool=default=2001:db8::10-2001:db8::20"},
			check: func(t *testing.T, c server.Config) {
				if len(c.ServiceLBPools) != 2 || c.ServiceLBPools[1].String() != "default=2001:db8::10-2001:db8::20" || c.ServiceLBPools[1].Size() != 17 {
					t.Errorf("ServiceLBPools %v", c.ServiceLBPools)
				}
			},
		},
		{
			name:    "flannel backend and interface",
			cmdline: []string{"--flannel-backend=host-gw", "--flannel-iface=lo"},
			check: func(t *testing.T, c server.Config) {
				if c.FlannelBackend != flannel.HostGW || c.FlannelIface != "lo" {
					t.Errorf("FlannelBackend %q FlannelIface %q", c.FlannelBackend, c.FlannelIface)
				}
			},
		},
		{
			name:    "no pod network",
			cmdline: []string{"--flannel-backend=none"},
			check: func(t *testing.T, c server.Config) {
				if c.FlannelBackend != flannel.None {
					t.Errorf("FlannelBackend %q", c.FlannelBackend)
				}
			},
		},
		{
			name:    "host part of a CIDR is masked",
			cmdline: []string{"--cluster-cidr=10.42.7.1/16"},
			check: func(t *testing.T, c server.Config) {
				if c.ClusterCIDR.String() != "10.42.0.0/16" {
					t.Errorf("ClusterCIDR %s", c.ClusterCIDR)
				}
			},
		},
		{
			name: "extra args, SANs and flags pass through",
			cmdline: []string{"--tls-san=a.example,10.0.0.1", "--kube-apiserver-arg=profiling=true", "--kube-apiserver-arg=v=2",
				"--kube-controller-manager-arg=+controllers=-foo", "--kube-scheduler-arg=v=3", "--etcd-arg=quota-backend-bytes=1",
				"--disable-agent", "--debug"},
			check: func(t *testing.T, c server.Config) {
				wantSlice(t, "TLSSANs", c.TLSSANs, "a.example", "10.0.0.1")
				wantSlice(t, "APIServerArgs", c.APIServerArgs, "profiling=true", "v=2")
				wantSlice(t, "ControllerManagerArgs", c.ControllerManagerArgs, "+controllers=-foo")
				wantSlice(t, "SchedulerArgs", c.SchedulerArgs, "v=3")
				wantSlice(t, "EtcdArgs", c.EtcdArgs, "quota-backend-bytes=1")
				if !c.DisableAgent || !c.Debug {
					t.Errorf("DisableAgent %v Debug %v", c.DisableAgent, c.Debug)
				}
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f, _ := parseServerFlags(t, append([]string{"--node-ip=192.0.2.10", "--node-name=node-1"}, tc.cmdline...)...)
			c, err := f.serverConfig(testExec)
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, c)
		})
	}
}

func TestServerConfigNodeNameFromHostname(t *testing.T) {
	host, err := os.Hostname()
	if err != nil {
		t.Skip("no hostname:", err)
	}
	f, _ := parseServerFlags(t, "--node-ip=192.0.2.10")
	c, err := f.serverConfig(testExec)
	if err != nil {
		// Only a hostname that is no valid node name may fail, naming the flag.
		if !strings.HasPrefix(err.Error(), "--node-name") {
			t.Fatalf("hostname %q: %v", host, err)
		}
		return
	}
	if c.NodeName != strings.ToLower(host) {
		t.Errorf("NodeName %q, want the lowercased hostname %q", c.NodeName, strings.ToLower(host))
	}
}

// TestServerCommandValidationRunsNothing runs the server subcommand through
// cobra with a fake run function: invalid flags fail before run is called,
// valid ones reach it with the config file applied.
func TestServerCommandValidationRunsNothing(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"config.yaml": "node-name: from-file\nnode-ip: 192.0.2.10\n"})
	config := filepath.Join(dir, "config.yaml")
	cases := []struct {
		name    string
		args    []string
		wantErr string
		wantRun bool
	}{
		{"invalid flag", []string{"--config", config, "--cluster-cidr", "bogus"}, "--cluster-cidr", false},
		{"missing named config", []string{"--config", filepath.Join(dir, "none.yaml")}, "--config", false},
		{"positional argument", []string{"--config", config, "extra"}, "unknown command", false},
		{"valid", []string{"-c", config, "--data-dir", dir, "--debug"}, "", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var ran bool
			var got server.Config
			cmd := newServerCommand(testExec, func(c server.Config, debug bool) error {
				ran, got = true, c
				if !debug {
					t.Error("debug not passed to run")
				}
				return nil
			})
			cmd.SetArgs(tc.args)
			cmd.SetOut(&strings.Builder{})
			cmd.SetErr(&strings.Builder{})
			err := cmd.Execute()
			if ran != tc.wantRun {
				t.Errorf("run called = %v, want %v", ran, tc.wantRun)
			}
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if got.NodeName != "from-file" || got.DataDir != dir || !got.Exec.Equal(testExec) {
					t.Errorf("config node %q data-dir %q exec %v", got.NodeName, got.DataDir, got.Exec)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestMainExitCode(t *testing.T) {
	config := filepath.Join(t.TempDir(), "config.yaml")
	writeFiles(t, filepath.Dir(config), map[string]string{"config.yaml": ""})
	cases := []struct {
		name       string
		argv       []string
		want       int
		wantStdout string
	}{
		{"invalid cluster-cidr fails validation", []string{"kedge", "server", "--config", config, "--node-name", "n1", "--cluster-cidr", "bogus"}, 1, ""},
		{"unknown flag", []string{"kedge", "server", "--no-such-flag"}, 1, ""},
		{"unknown subcommand", []string{"kedge", "no-such-command"}, 1, ""},
		{"version", []string{"kedge", "--version"}, 0, version.String()},
		// Kubernetes' global --version (verflag) must not reach the server
		// command, where it would be ignored and a server started.
		{"server has no --version", []string{"kedge", "server", "--config", config, "--version"}, 1, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// Main prints to os.Stdout and os.Stderr; capture them in files.
			dir := t.TempDir()
			out, err := os.Create(filepath.Join(dir, "stdout"))
			if err != nil {
				t.Fatal(err)
			}
			defer out.Close()
			errOut, err := os.Create(filepath.Join(dir, "stderr"))
			if err != nil {
				t.Fatal(err)
			}
			defer errOut.Close()
			stdout, stderr := os.Stdout, os.Stderr
			os.Stdout, os.Stderr = out, errOut
			code := Main(tc.argv, testExec)
			os.Stdout, os.Stderr = stdout, stderr
			printed, _ := os.ReadFile(out.Name())
			logged, _ := os.ReadFile(errOut.Name())
			if code != tc.want {
				t.Errorf("Main(%q) = %d, want %d; stderr: %s", tc.argv, code, tc.want, logged)
			}
			if !strings.Contains(string(printed), tc.wantStdout) {
				t.Errorf("stdout %q does not contain %q", printed, tc.wantStdout)
			}
			if code != 0 && !strings.Contains(string(logged), "kedge:") {
				t.Errorf("stderr %q has no error line", logged)
			}
		})
	}
}
