package logging

import (
	"context"
	"log/slog"
	"strings"
	"time"
)

// startupWindow is how long after Setup the start-up noise is demoted:
// afterwards the same lines may mean something is wrong, and pass.
const startupWindow = 2 * time.Minute

// startupNoise are upstream messages (prefixes) that a node logs, at
// warning or error level, while it starts and its parts wait for each
// other: they need no action. They are logged at debug level (shown with
// --debug) during the start-up window.
var startupNoise = []string{
	// The apiserver's etcd client while etcd, started alongside, comes up.
	"retrying of unary invoker failed",
	// The kubelet before its Node is registered and its first stats.
	"Error getting the current node from lister",
	"Unable to register mirror pod because node is not registered yet",
	"Skipping pod synchronization",
	"Image garbage collection failed once",
	"Failed to get node when trying to set owner ref to the node lease",
	"Failed to read data from checkpoint",
	"eviction manager: failed to check if we have separate container filesystem",
	"Eviction manager: failed to get summary stats",
	"Error updating node status, will retry",
	"Unable to update node status",
	// containerd sees the CNI configuration's temporary file first.
	"failed to reload cni configuration after receiving fs change event",
	// The control plane before its namespaces and the first Node exist.
	"Unable to remove old endpoints from kubernetes service",
	// The apiserver: a watch its clients closed while it started.
	"failed to sync with latest state: context canceled",
	// containerd before flannel writes the CNI configuration.
	"failed to load cni during init, please check CRI plugin status",
	// The 1.37 kubelet reading the memory manager checkpoint an older
	// kubelet wrote (a node upgraded from 1.36): it tries its v3 and v2
	// formats before the v1 one it then loads; with the None policy it never
	// rewrites the file, so every start says it. A checkpoint that is
	// really damaged fails the kubelet's start with its own error.
	"V2 checkpoint for memory manager is corrupt, falling back to V1",
}

// startupRaces are start-up messages that are noise only with a given
// error: then they need no action.
var startupRaces = []struct{ msg, err string }{
	// Node IPAM saw a new Node before its own pod CIDR patch reached its
	// informer and allocated again; the apiserver refuses the second CIDR,
	// the allocator releases it and the Node keeps its first.
	{"Failed to update node PodCIDR after multiple attempts", "node updates may not change podCIDR"},
	{"CIDR assignment for node failed. Releasing allocated CIDR", "node updates may not change podCIDR"},
	{"Error processing node work item", "node updates may not change podCIDR"},
	// The controller-manager's discovery (garbage collector, quota) while
	// metrics-server's APIService is registered but not yet available: the
	// aggregator answers for it a moment later.
	{"Error during resource discovery", "stale GroupVersion discovery: metrics.k8s.io/"},
	// The apiserver's own controllers before its system namespaces exist.
	{"Error while syncing ConfigMap", `namespaces "kube-system" not found`},
	{"Failed to ensure lease exists, will retry", `namespaces "kube-system" not found`},
}

// alwaysNoise are messages that never need action in kedge; they are
// always logged at debug level.
var alwaysNoise = []string{
	// Without CAP_SYS_RESOURCE the kubelet cannot raise its own limits or
	// lower its oom_score_adj; kedge logs the host fact once at start.
	"Failed to set rlimit on max file handles",
	"Failed to ensure process in container with oom score",
	// kube-proxy's advice for its own defaults, which kedge chose.
	"Kube-proxy configuration may be incomplete or incorrect",
	// The kubelet's static pod directory holds an empty file.
	"The manifest file is empty, ignoring.",
	// etcd on kedge's settings: one port for gRPC and HTTP (clients are
	// local), simple auth tokens (etcd auth is off; clients use certificates).
	"Running http and grpc server on single port.",
	"simple token is not cryptographically signed",
	// CoreDNS's informers, one line each; CoreDNS's readiness says it.
	"plugin/kubernetes: Caches are synced",
	// CoreDNS's discovery of the Metrics API (kedge's metrics-server), and
	// the apiserver's deprecation warning for the Endpoints it still lists
	// (CoreDNS 1.15 against Kubernetes 1.37): nothing to act on.
	"plugin/kubernetes: Adding GroupVersion ",
	"plugin/kubernetes: Warning: v1 Endpoints is deprecated",
	// kube-router's policy controller, two lines as it starts; kedge logs
	// "network policies enforced" once its rules are in place.
	"Starting network policy controller",
}

// quietHandler demotes the noise above to debug level.
type quietHandler struct {
	slog.Handler
	until time.Time // end of the start-up window
	now   func() time.Time
}

// Enabled lets every level through to Handle when debug lines may be
// dropped later: a demoted record is checked again there.
func (h quietHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.Handler.Enabled(ctx, l)
}

// Handle demotes a noisy record and drops it if debug is off.
func (h quietHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level > slog.LevelDebug && (h.noise(r.Message) || h.race(r)) {
		r.Level = slog.LevelDebug
		if !h.Handler.Enabled(ctx, slog.LevelDebug) {
			return nil
		}
	}
	return h.Handler.Handle(ctx, r)
}

// noise reports whether msg is one of the demoted messages now.
func (h quietHandler) noise(msg string) bool {
	for _, p := range alwaysNoise {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	if h.now().After(h.until) {
		return false
	}
	for _, p := range startupNoise {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

// race reports whether r is one of startupRaces, in the start-up window.
func (h quietHandler) race(r slog.Record) bool {
	if h.now().After(h.until) {
		return false
	}
	for _, n := range startupRaces {
		if !strings.HasPrefix(r.Message, n.msg) {
			continue
		}
		found := false
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "err" && strings.Contains(a.Value.String(), n.err) {
				found = true
			}
			return !found
		})
		if found {
			return true
		}
	}
	return false
}

// WithAttrs keeps the handler quiet.
func (h quietHandler) WithAttrs(a []slog.Attr) slog.Handler {
	return quietHandler{Handler: h.Handler.WithAttrs(a), until: h.until, now: h.now}
}

// WithGroup keeps the handler quiet.
func (h quietHandler) WithGroup(name string) slog.Handler {
	return quietHandler{Handler: h.Handler.WithGroup(name), until: h.until, now: h.now}
}
