// Package server is the composition root of the server role: it lists, in
// start order, every component a server node runs in the kedge process.
//
//	err := server.Run(ctx, cfg, log) // blocks until ctx is done or a component fails
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kedge-io/kedge/pkg/agent"
	"github.com/kedge-io/kedge/pkg/apiserver"
	"github.com/kedge-io/kedge/pkg/cloudcontroller"
	"github.com/kedge-io/kedge/pkg/component"
	"github.com/kedge-io/kedge/pkg/controllermanager"
	"github.com/kedge-io/kedge/pkg/diskguard"
	"github.com/kedge-io/kedge/pkg/etcd"
	"github.com/kedge-io/kedge/pkg/etcdnode"
	"github.com/kedge-io/kedge/pkg/etcdsnapshot"
	"github.com/kedge-io/kedge/pkg/flannel"
	"github.com/kedge-io/kedge/pkg/footprint"
	"github.com/kedge-io/kedge/pkg/join"
	"github.com/kedge-io/kedge/pkg/kubelet"
	"github.com/kedge-io/kedge/pkg/localstorage"
	"github.com/kedge-io/kedge/pkg/manifests"
	"github.com/kedge-io/kedge/pkg/metricsserver"
	"github.com/kedge-io/kedge/pkg/pki"
	"github.com/kedge-io/kedge/pkg/scheduler"
	"github.com/kedge-io/kedge/pkg/sdnotify"
	"github.com/kedge-io/kedge/pkg/secretsencrypt"
	"github.com/kedge-io/kedge/pkg/servicelb"
	"github.com/kedge-io/kedge/pkg/skew"
	"github.com/kedge-io/kedge/pkg/supervisor"
	"github.com/kedge-io/kedge/pkg/token"
	"github.com/kedge-io/kedge/pkg/upgrade"
	"github.com/kedge-io/kedge/pkg/version"
)

// Run prepares the server's state (certificates, kubeconfigs), starts the
// components in order and runs until ctx is done or one of them fails; then
// it stops them in reverse order.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	sd := sdnotify.FromEnv(log) // systemd's notify socket, before anything else reads it
	context.AfterFunc(ctx, sd.Stopping)
	if cfg.ClusterResetRestorePath != "" {
		return restoreSnapshot(cfg, log) // and stop: the server is started again as usual
	}
	if err := preflight(cfg); err != nil {
		return err
	}
	unlock, err := lockDataDir(cfg)
	if err != nil {
		return err
	}
	defer unlock()
	if err := checkEtcdData(cfg, log); err != nil {
		return err
	}
	if err := checkVersionRecord(cfg); err != nil {
		return err
	}
	if cfg.JoinURL != "" {
		sd.Status("joining " + cfg.JoinURL)
	}
	initialCluster, err := joinCluster(ctx, cfg, log)
	if err != nil {
		return err
	}
	pkiCfg := pki.Config{
		Dir:           cfg.tlsDir(),
		ClusterDomain: cfg.ClusterDomain,
		ServiceIP:     FirstServiceIP(cfg.ServiceCIDR),
		SANs:          sans(cfg),
		NodeName:      cfg.NodeName,
		Validity:      cfg.CertValidity,
	}
	certs, err := pki.Generate(pkiCfg)
	if err != nil {
		return err
	}
	local := "https://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.HTTPSPort))
	kubeconfigs := map[string]pki.KubeconfigOptions{
		"admin.kubeconfig":      {Server: local, CAFile: certs.ServerCA, CertFile: certs.AdminCert, KeyFile: certs.AdminKey, User: "admin", ReferenceFiles: true},
		"controller.kubeconfig": {Server: local, CAFile: certs.ServerCA, CertFile: certs.ControllerManagerCert, KeyFile: certs.ControllerManagerKey, User: "controller-manager", ReferenceFiles: true},
		"scheduler.kubeconfig":  {Server: local, CAFile: certs.ServerCA, CertFile: certs.SchedulerCert, KeyFile: certs.SchedulerKey, User: "scheduler", ReferenceFiles: true},
		metricsKubeconfig:       {Server: local, CAFile: certs.ServerCA, CertFile: certs.MetricsServerClientCert, KeyFile: certs.MetricsServerClientKey, User: "metrics-server", ReferenceFiles: true},
	}
	userKubeconfig := kubeconfigs["admin.kubeconfig"]
	userKubeconfig.ReferenceFiles = false // --write-kubeconfig's copy embeds the data
	for name, o := range kubeconfigs {
		if err := pki.WriteKubeconfig(filepath.Join(cfg.credDir(), name), 0o600, o); err != nil {
			return err
		}
	}

	tok, agentTok, err := ensureTokens(cfg, certs.ServerCA, log)
	if err != nil {
		return err
	}
	encryptionConfig, err := ensureEncryption(cfg, log)
	if err != nil {
		return err
	}
	secretsencrypt.SetReloadInterval()
	tokenSync, err := newTokenSync(cfg, certs.ServerCA, tok, newAdminClient(cfg.adminKubeconfig()), log)
	if err != nil {
		return err
	}
	adminKubeconfig := cfg.adminKubeconfig()
	etcdClient := localEtcd(etcd.ClientTLS{CA: certs.EtcdServerCA, Cert: certs.EtcdClientCert, Key: certs.EtcdClientKey})
	sup, err := supervisor.New(supervisor.Config{
		CACertFile:  certs.ServerCA,
		Secret:      tok.Secret,
		AgentSecret: agentTok.Secret,
		CA:          certs,
		Cluster: supervisor.Cluster{
			ClusterCIDR:    cfg.ClusterCIDR.String(),
			ClusterDNS:     cfg.ClusterDNS.String(),
			ClusterDomain:  cfg.ClusterDomain,
			FlannelBackend: string(cfg.FlannelBackend),
			Disabled:       cfg.Disable,
			Servers:        []string{"https://" + net.JoinHostPort(cfg.AdvertiseIP.String(), strconv.Itoa(cfg.HTTPSPort))},
		},
		Settings:     settings(cfg),
		CertValidity: cfg.CertValidity,
		NewEtcd:      func() (supervisor.EtcdMembers, error) { return etcdClient() },
		NewClient:    newAdminClient(adminKubeconfig),

		ServerSecret:         tokenSync.Current,
		EncryptionConfigFile: encryptionConfig,
		Encryption:           secretsencrypt.NewHandler(encryptionConfig, certs.ClientCA),
		Versions:             etcdVersions(etcdClient),
		Log:                  log,
	})
	if err != nil {
		return err
	}

	etcdCfg := etcd.Config{
		Name:        cfg.NodeName,
		DataDir:     cfg.dbDir(),
		AdvertiseIP: cfg.AdvertiseIP,
		TLS: etcd.TLS{
			ServerCA: certs.EtcdServerCA, ServerCert: certs.EtcdServerCert, ServerKey: certs.EtcdServerKey,
			PeerCA: certs.EtcdPeerCA, PeerCert: certs.EtcdPeerCert, PeerKey: certs.EtcdPeerKey,
		},
		ExtraArgs: cfg.EtcdArgs,
		Debug:     cfg.Debug,
		Log:       log,
	}
	if initialCluster != "" {
		etcdCfg.InitialCluster, etcdCfg.ClusterState = initialCluster, "existing"
	}
	if cfg.ClusterReset {
		return resetCluster(ctx, cfg, etcdCfg, log) // and stop
	}
	// Under --etcd-min-free, writes stop cluster-wide before etcd's disk fills.
	guard := diskguard.New(diskguard.Config{
		Dir:     cfg.dbDir(),
		Node:    cfg.NodeName,
		MinFree: cfg.EtcdMinFree,
		Etcd:    etcdClient,
		Report:  diskguard.NodeEvents{Client: newAdminClient(adminKubeconfig), Node: cfg.NodeName},
		Log:     log,
	})
	wrap := func(h http.Handler, loopback string) http.Handler { return sup.Wrap(guard.Filter(h, loopback)) }
	m := component.NewManager(log)
	renewer, caSync := certRenewer(cfg, pkiCfg, userKubeconfig, etcdClient, log)
	m.Add(renewer) // renews certificates while kedge runs
	m.Add(etcd.New(etcdCfg))
	m.Add(caSync) // applies `kedge certificate rotate-ca` of any server
	if cfg.EtcdMinFree > 0 {
		m.Add(guard)
	}
	// The apiserver retries etcd until it answers (as it does when both run
	// as separate processes): its set-up, a second or more of CPU, overlaps
	// etcd's start and, on a joining server, the wait for promotion.
	m.AddAlongside(apiserver.New(apiserver.Config{
		BindAddress:   cfg.BindAddress.String(),
		Port:          cfg.HTTPSPort,
		AdvertiseIP:   cfg.AdvertiseIP,
		ServiceCIDR:   cfg.ServiceCIDR.String(),
		ClusterDomain: cfg.ClusterDomain,
		EtcdServers:   []string{etcdCfg.ClientURL()},
		CertDir:       cfg.tlsDir(),
		Certs:         certs,
		ExtraArgs:     cfg.APIServerArgs,
		Wrap:          wrap,
		Log:           log,

		EncryptionConfig: encryptionConfig, // Secrets encrypted at rest
	}))
	m.AddAlongside(skew.NewGate(skew.GateConfig{Name: cfg.NodeName, Version: version.Kubernetes(), DBDir: cfg.dbDir(), Etcd: etcdClient, Log: log}))
	// The node's container runtime (the helpers' extraction, containerd,
	// its images) needs no API: it starts meanwhile; the kubelet waits for it.
	node, runtime, err := nodeRuntime(cfg, certs, kubeconfigs["admin.kubeconfig"], log)
	if err != nil {
		return err
	}
	if runtime != nil {
		m.AddAlongside(runtime)
	}
	m.Add(&writeKubeconfig{path: cfg.Kubeconfig, mode: cfg.KubeconfigMode, opts: userKubeconfig})
	// What the node does not wait for (the kubelet needs the API, the
	// controller-manager's early controllers and the manifests' RBAC)
	// starts in the background, in this order; all of it is Ready before
	// the server is.
	addons := component.NewSequence("add-ons", log)
	m.Add(addons)
	addons.Add(tokenSync)                // the server token, as `kedge token rotate` sets it
	csiGuard := kubelet.NewCSIGuard(log) // the kubelet's CSI plugin inited after the controller-manager's
	m.Add(controllermanager.New(controllermanager.Config{
		Starting:    csiGuard.ControllersStarting,
		Kubeconfig:  filepath.Join(cfg.credDir(), "controller.kubeconfig"),
		ClusterCIDR: cfg.ClusterCIDR.String(),
		ServiceCIDR: cfg.ServiceCIDR.String(),
		Certs:       certs,
		ExtraArgs:   cfg.ControllerManagerArgs,
		Log:         log,
	}))
	addons.Add(scheduler.New(scheduler.Config{
		Kubeconfig:  filepath.Join(cfg.credDir(), "scheduler.kubeconfig"),
		ServingCert: certs.SchedulerServingCert,
		ServingKey:  certs.SchedulerServingKey,
		ExtraArgs:   cfg.SchedulerArgs,
		Log:         log,
	}))
	builtins := manifests.New(manifests.Config{
		Kubeconfig: adminKubeconfig,
		Dir:        filepath.Join(cfg.serverDir(), "manifests"),
		Values:     manifests.Values{ClusterDNS: cfg.ClusterDNS.String(), ClusterDomain: cfg.ClusterDomain},
		Disabled:   cfg.Disable,
		Record:     filepath.Join(cfg.serverDir(), ManifestsRecord),
		Log:        log,
	})
	if builtins.AppliedBefore() {
		addons.Add(builtins) // a restart: the RBAC the node needs is there since the last start
	} else {
		m.Add(builtins)
	}
	if !slices.Contains(cfg.Disable, AddonServiceLB) {
		// Before an address is handed out, an ARP (IPv4) or NDP (IPv6) probe from this server's
		// segment checks that no machine answers for it.
		inUse, err := servicelb.Probe(cfg.NodeIP, 300*time.Millisecond)
		if err != nil {
			log.Warn("LoadBalancer addresses are handed out without an ARP probe", "err", err)
		}
		addons.Add(servicelb.NewController(servicelb.ControllerConfig{Kubeconfig: adminKubeconfig, Pools: cfg.ServiceLBPools, InUse: inUse, Log: log}))
	}
	if !slices.Contains(cfg.Disable, AddonLocalStorage) {
		addons.Add(localstorage.NewController(localstorage.ControllerConfig{Kubeconfig: adminKubeconfig, Log: log}))
	}
	if !slices.Contains(cfg.Disable, AddonCloudController) {
		addons.Add(cloudcontroller.New(cloudcontroller.Config{Kubeconfig: adminKubeconfig, Log: log}))
	}
	if !slices.Contains(cfg.Disable, AddonMetricsServer) {
		addons.Add(metricsserver.New(metricsserver.Config{
			Kubeconfig:      filepath.Join(cfg.credDir(), metricsKubeconfig),
			AdminKubeconfig: adminKubeconfig,
			BindAddress:     cfg.BindAddress,
			ServingCert:     certs.MetricsServerCert,
			ServingKey:      certs.MetricsServerKey,
			ServerCA:        certs.ServerCA,
			RequestHeaderCA: certs.RequestHeaderCA,
			Log:             log,
		}))
	}
	addons.Add(etcdnode.New(etcdnode.Config{
		Kubeconfig: adminKubeconfig,
		NodeName:   ownNode(cfg),
		Etcd:       etcdClient,
		Log:        log,
	}))
	addons.Add(upgrade.NewController(upgrade.ControllerConfig{Kubeconfig: adminKubeconfig, Log: log})) // Upgrade objects
	if !cfg.EtcdSnapshots.Disable {
		addons.Add(etcdsnapshot.NewScheduler(snapshotSchedule(cfg, etcdClient, log)))
	}

	if runtime != nil {
		node.CSIGuard = csiGuard
		m.Add(runtime.Done())
		agent.AddNode(m, node, log)
	}
	m.Add(addons.Done())

	sd.Status("waiting for etcd and the control plane")
	if err := m.Start(ctx); err != nil {
		if ctx.Err() != nil {
			log.Info("stopped during start-up", "reason", context.Cause(ctx))
			return nil // a requested stop, not a failure
		}
		if errors.Is(err, etcd.ErrRemoved) {
			return leaveCluster(cfg, log)
		}
		return err
	}
	log.Info("kedge server ready", "since_exec", time.Since(cfg.Exec).Round(time.Millisecond), "api", local, "kubeconfig", cfg.Kubeconfig, "join_token", cfg.TokenFile(), "agent_token", cfg.AgentTokenFile())
	go footprint.Keep(ctx, log)
	// systemd: ready once the node is (the API, without an agent or without
	// kedge's pod network, which only the user's CNI makes Ready).
	ready := sdnotify.NodeReady(adminKubeconfig, cfg.NodeName)
	if cfg.DisableAgent || cfg.FlannelBackend == flannel.None {
		ready = sdnotify.Started("the API")
	}
	go sd.ReadyWhen(ctx, "kedge server ready", ready)

	begin := time.Now()
	err = m.Run(ctx)
	if errors.Is(err, etcd.ErrRemoved) {
		err = leaveCluster(cfg, log)
	}
	log.Info("kedge server stopped", "took", time.Since(begin).Round(time.Millisecond))
	return err
}

// ManifestsRecord is the file, in <data-dir>/server, where the manifests
// controller records the built-ins it applied (manifests.Config.Record).
const ManifestsRecord = "manifests-applied"

// metricsKubeconfig is metrics-server's kubeconfig in the cred directory.
const metricsKubeconfig = "metrics-server.kubeconfig"

// ensureTokens writes, on first start, the join token (the secret of
// --token or a generated one) and the agent token (--agent-token, the
// cluster's when this server joined, or a generated one), and checks the
// flags against the stored tokens afterwards.
func ensureTokens(cfg Config, caFile string, log *slog.Logger) (server, agent join.Token, err error) {
	caPEM, err := pki.PinnedCA(caFile) // what /cacerts serves: the new CA during a rotation
	if err != nil {
		return server, agent, err
	}
	given := cfg.Token
	if t, err := join.Parse(given); given != "" && err == nil && previousCAToken(cfg, t) {
		// `kedge certificate rotate-ca` replaced the CA it pins; the secret
		// is what counts here.
		log.Warn("--token pins the cluster's previous CA, replaced by `kedge certificate rotate-ca`: put the new token (in the token file) in this server's config", "component", "server", "token_file", cfg.TokenFile())
		given = t.Secret
	}
	if t, err := join.Parse(given); given != "" && err == nil && token.Retired(cfg.rotatedTokenFile(), t.Secret) {
		// `kedge token rotate` retired it: this server keeps the new one.
		log.Warn("--token is the cluster's previous server token, replaced by `kedge token rotate`: put the new one (in the token file) in this server's config", "component", "server", "token_file", cfg.TokenFile())
		given = ""
	}
	if server, err = ensureTokenFile(cfg.TokenFile(), "--token", given, caPEM, caFile); err != nil {
		return server, agent, err
	}
	givenAgent := cfg.AgentToken
	if t, err := join.Parse(givenAgent); givenAgent != "" && err == nil && previousCAToken(cfg, t) {
		givenAgent = t.Secret // pinned to the CA `kedge certificate rotate-ca` replaced
	}
	agent, err = ensureTokenFile(cfg.AgentTokenFile(), "--agent-token", givenAgent, caPEM, caFile)
	return server, agent, err
}

// ensureTokenFile keeps the token file at path, with the secret of given
// (flag's value: a bare secret or a full token of this cluster's CA) or
// the stored or a generated one.
func ensureTokenFile(path, flag, given string, caPEM []byte, caFile string) (join.Token, error) {
	var secret string
	if given != "" {
		tok, err := join.Parse(given)
		if err != nil && flag != "--token" {
			return join.Token{}, fmt.Errorf("%s: %w", flag, err) // Parse names --token
		} else if err != nil {
			return join.Token{}, err
		}
		if tok.Pinned() && tok.CAHash != join.CAHash(caPEM) {
			return join.Token{}, fmt.Errorf("%s: its CA hash does not match this cluster's CA (%s); give the bare secret or this cluster's token from %s", flag, caFile, path)
		}
		secret = tok.Secret
	}
	tok, err := join.EnsureTokenFile(path, caPEM, secret)
	if err != nil && flag != "--token" {
		return join.Token{}, fmt.Errorf("%s: %w", flag, err) // EnsureTokenFile names --token
	}
	return tok, err
}

// sans lists the extra names of the apiserver serving certificate.
func sans(cfg Config) []string {
	out := []string{cfg.NodeName, cfg.NodeIP.String(), cfg.AdvertiseIP.String()}
	if !cfg.BindAddress.IsUnspecified() {
		out = append(out, cfg.BindAddress.String())
	}
	return append(out, cfg.TLSSANs...)
}

// newAdminClient returns a factory of clients of the local apiserver with
// the admin kubeconfig (written before the apiserver starts).
func newAdminClient(kubeconfig string) func() (kubernetes.Interface, error) {
	return func() (kubernetes.Interface, error) {
		rest, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			return nil, err
		}
		return kubernetes.NewForConfig(rest)
	}
}
