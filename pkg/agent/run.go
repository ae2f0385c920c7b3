package agent

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/kedge-io/kedge/pkg/apicache"
	"github.com/kedge-io/kedge/pkg/component"
	"github.com/kedge-io/kedge/pkg/embedded"
	"github.com/kedge-io/kedge/pkg/flannel"
	"github.com/kedge-io/kedge/pkg/footprint"
	"github.com/kedge-io/kedge/pkg/hostinfo"
	"github.com/kedge-io/kedge/pkg/join"
	"github.com/kedge-io/kedge/pkg/loadbalancer"
	"github.com/kedge-io/kedge/pkg/sdnotify"
)

// LoadBalancerAddress is where an agent's apiserver load balancer listens.
const LoadBalancerAddress = "127.0.0.1:6444"

// Run is the agent role (`kedge agent`): it joins the cluster at serverURL
// with token, then runs the node's components until ctx is done or one of
// them fails, and stops them in reverse order. Pods keep running.
func Run(ctx context.Context, node Config, serverURL, token string, log *slog.Logger) error {
	if os.Geteuid() != 0 {
		return errors.New("kedge agent must run as root (it runs containers and configures networking)")
	}
	sd := sdnotify.FromEnv(log) // systemd's notify socket, before anything else reads it
	context.AfterFunc(ctx, sd.Stopping)
	if err := CheckPorts(append(Ports(node.NodeIP), Port{Addr: LoadBalancerAddress, What: "apiserver load balancer"}, Port{Addr: apicache.Address, What: "kubelet API cache"})); err != nil {
		return err
	}
	// The components these facts change say how, once each: the kubelet
	// for cgroup v1, containerd for a missing CAP_SYS_RESOURCE.
	node.Host = hostinfo.Detect()
	// A node that joined before starts from what it remembers, without a
	// server (its pods run on, served by the kubelet's API cache), and
	// joins again in the background; only the first join waits.
	offline, err := loadJoined(&node, serverURL)
	if err != nil {
		return err
	}
	if offline {
		log.Info("starting from the last join; joining again in the background", "component", "agent", "server", serverURL, "servers", node.Servers)
	} else {
		sd.Status("waiting for the server at " + serverURL)
		if err := Join(ctx, &node, serverURL, token, log); err != nil {
			return err
		}
	}
	if err := CheckNetwork(node); err != nil {
		return err
	}
	assets, err := embedded.Extract(node.DataDir)
	if err != nil {
		return err
	}
	// Node components reach the apiservers through a load balancer on
	// loopback that fails over between every server it knows.
	lb := loadbalancer.New(loadbalancer.Config{Listen: LoadBalancerAddress, Servers: node.Servers, Log: log,
		Kubeconfig: filepath.Join(node.Dir(), "etc", "kube-proxy.kubeconfig")})
	if err := WriteKubeconfigs(&node, lb.Address()); err != nil {
		return err
	}
	cache := newKubeletCache(node, lb.Address(), log)
	if err := writeKubeletKubeconfig(node, cache); err != nil {
		return err
	}
	tok, err := join.Parse(token)
	if err != nil {
		return err
	}
	node.NodeMetaApply = supervisorApply(lb.Address(), tok, node.DataDir, log)
	m := component.NewManager(log)
	m.Add(NewRenewer(node, LoadBalancerAddress, log)) // renews the node's certificates through the supervisor
	m.Add(lb)
	m.Add(cache) // the kubelet's API cache, in front of lb
	ctx, refuse := context.WithCancelCause(ctx)
	defer refuse(nil)
	if offline {
		go rejoin(ctx, node, serverURL, token, lb.Update, refuse, log)
	}
	AddComponents(m, node, assets, log)
	sd.Status("joined " + serverURL + "; starting the node")
	if err := m.Start(ctx); err != nil {
		if err := refusal(ctx); err != nil {
			return err
		}
		if ctx.Err() != nil {
			log.Info("stopped during start-up", "reason", context.Cause(ctx))
			return nil // a requested stop, not a failure
		}
		return err
	}
	log.Info("kedge agent ready", "node", node.NodeName, "server", serverURL)
	go footprint.Keep(ctx, log)
	// systemd: ready once the node is (without kedge's pod network, which
	// only the user's CNI makes Ready, once it runs).
	ready := sdnotify.NodeReady(node.KubeletKubeconfig, node.NodeName)
	if node.FlannelBackend == flannel.None {
		ready = sdnotify.Started("the node")
	}
	go sd.ReadyWhen(ctx, "kedge agent ready", ready)
	err = m.Run(ctx)
	if r := refusal(ctx); r != nil {
		return r
	}
	return err
}
