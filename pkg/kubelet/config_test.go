package kubelet

import (
	"flag"
	"maps"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/kubernetes/cmd/kubelet/app/options"
	kubeletconfig "k8s.io/kubernetes/pkg/kubelet/apis/config"

	"github.com/kedge-io/kedge/pkg/hostinfo"
)

// baseConfig is a complete Config for a cgroup v1 host without systemd,
// like the machine these tests were written on.
func baseConfig() Config {
	return Config{
		NodeName:                 "node1",
		NodeIP:                   net.ParseIP("192.0.2.10"),
		RootDir:                  "/data/agent/kubelet/",
		Kubeconfig:               "/data/agent/kubelet.kubeconfig",
		ClientCAFile:             "/data/agent/tls/client-ca.crt",
		ServingCert:              "/data/agent/tls/kubelet-serving.crt",
		ServingKey:               "/data/agent/tls/kubelet-serving.key",
		ContainerRuntimeEndpoint: "/run/kedge/containerd.sock",
		ClusterDNS:               []net.IP{net.ParseIP("10.43.0.10")},
		ClusterDomain:            "cluster.local.",
		Host:                     hostinfo.Host{CgroupV1: true},
		ResolvConf:               "/run/systemd/resolve/resolv.conf",
	}
}

func TestRender(t *testing.T) {
	cases := []struct {
		name    string
		mutate  func(*Config)
		raw     bool // skip the validation, which reads the host's cgroup version
		check   func(*testing.T, *options.KubeletServer)
		wantErr []string
	}{
		{
			name: "cgroup v1 without systemd",
			check: func(t *testing.T, s *options.KubeletServer) {
				expect(t, "failCgroupV1", s.FailCgroupV1, false)
				expect(t, "cgroupDriver", s.CgroupDriver, "cgroupfs")
			},
		},
		{
			name:   "cgroup v2 with systemd",
			mutate: func(c *Config) { c.Host = hostinfo.Host{Systemd: true} },
			raw:    true,
			check: func(t *testing.T, s *options.KubeletServer) {
				expect(t, "failCgroupV1", s.FailCgroupV1, true)
				expect(t, "cgroupDriver", s.CgroupDriver, "systemd")
			},
		},
		{
			name: "kubelet API: certificates and webhook, no anonymous access",
			check: func(t *testing.T, s *options.KubeletServer) {
				a := s.Authentication
				expect(t, "anonymous", a.Anonymous.Enabled, false)
				expect(t, "webhook authn", a.Webhook.Enabled, true)
				expect(t, "clientCAFile", a.X509.ClientCAFile, "/data/agent/tls/client-ca.crt")
				expect(t, "authorization", s.Authorization.Mode, kubeletconfig.KubeletAuthorizationModeWebhook)
				expect(t, "readOnlyPort", s.ReadOnlyPort, int32(0))
				expect(t, "tlsCertFile", s.TLSCertFile, "/data/agent/tls/kubelet-serving.crt")
				expect(t, "tlsPrivateKeyFile", s.TLSPrivateKeyFile, "/data/agent/tls/kubelet-serving.key")
				expect(t, "rotateCertificates", s.RotateCertificates, false)
				expect(t, "serverTLSBootstrap", s.ServerTLSBootstrap, false)
				expect(t, "healthz", s.HealthzBindAddress+":"+strconv.Itoa(int(s.HealthzPort)), "127.0.0.1:10248")
			},
		},
		{
			name: "DNS",
			check: func(t *testing.T, s *options.KubeletServer) {
				expect(t, "clusterDNS", s.ClusterDNS, []string{"10.43.0.10"})
				expect(t, "clusterDomain", s.ClusterDomain, "cluster.local")
				expect(t, "resolvConf", s.ResolverConfig, "/run/systemd/resolve/resolv.conf")
			},
		},
		{
			name: "node identity and paths",
			check: func(t *testing.T, s *options.KubeletServer) {
				expect(t, "kubeconfig", s.KubeConfig, "/data/agent/kubelet.kubeconfig")
				expect(t, "hostnameOverride", s.HostnameOverride, "node1")
				expect(t, "nodeIP", s.NodeIP, "192.0.2.10")
				expect(t, "rootDirectory", s.RootDirectory, "/data/agent/kubelet")
				expect(t, "certDirectory", s.CertDirectory, "/data/agent/kubelet/pki")
				expect(t, "containerRuntimeEndpoint", s.ContainerRuntimeEndpoint, "unix:///run/kedge/containerd.sock")
				expect(t, "staticPodPath", s.StaticPodPath, "")
			},
		},
		{
			name:   "default root directory",
			mutate: func(c *Config) { c.RootDir = "" },
			check: func(t *testing.T, s *options.KubeletServer) {
				expect(t, "rootDirectory", s.RootDirectory, "/var/lib/kubelet")
			},
		},
		{
			name: "resources and images",
			check: func(t *testing.T, s *options.KubeletServer) {
				expect(t, "evictionHard", s.EvictionHard, evictionHard)
				expect(t, "evictionMinimumReclaim", s.EvictionMinimumReclaim, evictionMinimumReclaim)
				expect(t, "serializeImagePulls", s.SerializeImagePulls, false)
				expect(t, "imageGCHigh", s.ImageGCHighThresholdPercent, int32(85))
				expect(t, "imageGCLow", s.ImageGCLowThresholdPercent, int32(80))
				expect(t, "failSwapOn", s.FailSwapOn, false)
				expect(t, "protectKernelDefaults", s.ProtectKernelDefaults, false)
				expect(t, "cgroupsPerQOS", s.CgroupsPerQOS, true)
				expect(t, "enforceNodeAllocatable", s.EnforceNodeAllocatable, []string{"pods"})
				expect(t, "maxPods", s.MaxPods, int32(110))
			},
		},
		{
			name: "--kubelet-arg overrides",
			mutate: func(c *Config) {
				c.ExtraArgs = []string{"max-pods=50", "--eviction-hard=memory.available<200Mi", "image_gc_high_threshold=90"}
			},
			check: func(t *testing.T, s *options.KubeletServer) {
				expect(t, "maxPods", s.MaxPods, int32(50))
				expect(t, "evictionHard", s.EvictionHard, map[string]string{"memory.available": "200Mi"})
				expect(t, "imageGCHigh", s.ImageGCHighThresholdPercent, int32(90))
				expect(t, "anonymous", s.Authentication.Anonymous.Enabled, false)
			},
		},
		{
			name:   "--kubelet-arg node-labels adds to the node labels",
			mutate: func(c *Config) { c.NodeLabels = map[string]string{"a": "1"}; c.ExtraArgs = []string{"node-labels=b=2"} },
			check: func(t *testing.T, s *options.KubeletServer) {
				expect(t, "nodeLabels", s.NodeLabels, map[string]string{"a": "1", "b": "2"})
			},
		},
		{
			name: "labels the kubelet may not set are left to the node-config syncer",
			mutate: func(c *Config) {
				c.NodeLabels = map[string]string{"node-role.kubernetes.io/control-plane": "true", "topology.kubernetes.io/zone": "z1"}
			},
			check: func(t *testing.T, s *options.KubeletServer) {
				expect(t, "nodeLabels", s.NodeLabels, map[string]string{"topology.kubernetes.io/zone": "z1"})
			},
		},
		{
			name: "taints are registered",
			mutate: func(c *Config) {
				c.RegisterWithTaints = []corev1.Taint{{Key: "dedicated", Value: "edge", Effect: corev1.TaintEffectNoSchedule}}
			},
			check: func(t *testing.T, s *options.KubeletServer) {
				expect(t, "registerWithTaints", s.RegisterWithTaints, []corev1.Taint{{Key: "dedicated", Value: "edge", Effect: corev1.TaintEffectNoSchedule}})
			},
		},
		{
			name:    "node-role label through --kubelet-arg",
			mutate:  func(c *Config) { c.ExtraArgs = []string{"node-labels=node-role.kubernetes.io/worker=true"} },
			wantErr: []string{"--kubelet-arg", "node-role.kubernetes.io/worker"},
		},
		{
			name:    "unknown flag",
			mutate:  func(c *Config) { c.ExtraArgs = []string{"bogus=1"} },
			wantErr: []string{"--kubelet-arg", "bogus"},
		},
		{
			name:    "entry without =",
			mutate:  func(c *Config) { c.ExtraArgs = []string{"max-pods"} },
			wantErr: []string{"--kubelet-arg", `"max-pods"`},
		},
		{
			name:    "invalid value",
			mutate:  func(c *Config) { c.ExtraArgs = []string{"image-gc-high-threshold=200"} },
			wantErr: []string{"--kubelet-arg", "imageGCHighThresholdPercent"},
		},
		{
			name:    "unknown feature gate",
			mutate:  func(c *Config) { c.ExtraArgs = []string{"feature-gates=NoSuchGate=true"} },
			wantErr: []string{"--kubelet-arg", "NoSuchGate"},
		},
		{
			name:    "missing runtime endpoint",
			mutate:  func(c *Config) { c.ContainerRuntimeEndpoint = "" },
			wantErr: []string{"container runtime endpoint"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := baseConfig()
			if tc.mutate != nil {
				tc.mutate(&cfg)
			}
			fn := Render
			if tc.raw {
				fn = render
			}
			s, err := fn(cfg)
			if len(tc.wantErr) > 0 {
				if err == nil {
					t.Fatal("no error")
				}
				for _, w := range tc.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not contain %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, s)
		})
	}
}

// TestRenderGlobalFlags: cadvisor's flags are accepted but Render leaves the
// process-wide values alone; applyGlobalFlags sets them.
func TestRenderGlobalFlags(t *testing.T) {
	g := flag.CommandLine.Lookup("housekeeping_interval")
	before := g.Value.String()
	t.Cleanup(func() { _ = g.Value.Set(before) })
	cfg := baseConfig()
	cfg.ExtraArgs = []string{"housekeeping-interval=17s"}
	if _, err := Render(cfg); err != nil {
		t.Fatal(err)
	}
	if g.Value.String() != before {
		t.Fatalf("Render changed housekeeping_interval to %s", g.Value)
	}
	if err := applyGlobalFlags([]string{"--housekeeping-interval=17s", "--max-pods=3"}); err != nil {
		t.Fatal(err)
	}
	if g.Value.String() != "17s" {
		t.Fatalf("housekeeping_interval = %s after applyGlobalFlags", g.Value)
	}
}

// TestRenderConfigFiles: config and config-dir files are merged over kedge's
// defaults, and flags win over them.
func TestRenderConfigFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	const head = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n"
	file := write("kubelet.yaml", head+"shutdownGracePeriod: 30s\nmaxPods: 30\nfeatureGates:\n  GracefulNodeShutdown: true\n")
	write("conf.d/10-eviction.conf", head+"evictionHard:\n  memory.available: 200Mi\n")
	write("conf.d/20-pods.conf", head+"maxPods: 35\n")
	write("conf.d/README", "not a drop-in")

	cfg := baseConfig()
	cfg.ExtraArgs = []string{"config=" + file, "config-dir=" + filepath.Join(dir, "conf.d"), "max-pods=40"}
	s, err := Render(cfg)
	if err != nil {
		t.Fatal(err)
	}
	expect(t, "shutdownGracePeriod", s.ShutdownGracePeriod.Duration, 30*time.Second)
	expect(t, "maxPods (flag wins)", s.MaxPods, int32(40))
	want := maps.Clone(evictionHard)
	want["memory.available"] = "200Mi"
	expect(t, "evictionHard", s.EvictionHard, want)
	expect(t, "featureGates", s.FeatureGates, map[string]bool{"GracefulNodeShutdown": true})
	expect(t, "readOnlyPort", s.ReadOnlyPort, int32(0))
	expect(t, "anonymous", s.Authentication.Anonymous.Enabled, false)
	expect(t, "failCgroupV1", s.FailCgroupV1, false)
	expect(t, "clusterDNS", s.ClusterDNS, []string{"10.43.0.10"})

	bad := write("bad.yaml", "apiVersion: v1\nkind: ConfigMap\n")
	cfg.ExtraArgs = []string{"config=" + bad}
	if _, err := Render(cfg); err == nil || !strings.Contains(err.Error(), "--kubelet-arg") || !strings.Contains(err.Error(), bad) {
		t.Fatalf("config file of another kind: err = %v", err)
	}
}

func TestPickResolvConf(t *testing.T) {
	dir := t.TempDir()
	stub := filepath.Join(dir, "stub")
	upstream := filepath.Join(dir, "upstream")
	real := filepath.Join(dir, "real")
	for p, body := range map[string]string{
		stub:     "# systemd-resolved stub\nnameserver 127.0.0.53\noptions edns0\nsearch lan\n",
		upstream: "nameserver 192.0.2.53\nnameserver fe80::1%eth0\n",
		real:     "nameserver ::1\nnameserver 198.51.100.1\n",
	} {
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	missing := filepath.Join(dir, "missing")
	for _, tc := range []struct {
		files []string
		want  string
	}{
		{[]string{real, upstream}, real},
		{[]string{stub, upstream}, upstream},
		{[]string{stub, missing}, stub},
		{[]string{missing, stub}, missing},
	} {
		if got := pickResolvConf(tc.files...); got != tc.want {
			t.Errorf("pickResolvConf(%v) = %s, want %s", tc.files, got, tc.want)
		}
	}
}

func expect[T any](t *testing.T, what string, got, want T) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s = %#v, want %#v", what, got, want)
	}
}
