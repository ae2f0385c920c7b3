package baseline

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kedge-io/kedge/pkg/containerd"
	"github.com/kedge-io/kedge/pkg/coredns"
	"github.com/kedge-io/kedge/pkg/flannel"
	"github.com/kedge-io/kedge/pkg/nodemeta"
)

// poll calls f every interval until it returns true or an error, or ctx ends.
func poll(ctx context.Context, interval time.Duration, f func(context.Context) (bool, error)) error {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		done, err := f(ctx)
		if err != nil || done {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// gate is a condition other steps wait for: open once reached.
type gate chan struct{}

func newGate() gate { return make(gate) }

// wait returns when g opens or ctx ends.
func (g gate) wait(ctx context.Context) error {
	select {
	case <-g:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// client returns a clientset for a kubeconfig.
func client(kubeconfig string) (*kubernetes.Clientset, error) {
	rest, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
	}
	rest.Timeout = 5 * time.Second
	return kubernetes.NewForConfig(rest)
}

// waitAPIServer polls /readyz until the apiserver reports ready.
func waitAPIServer(ctx context.Context, kubeconfig string) error {
	c, err := client(kubeconfig)
	if err != nil {
		return err
	}
	return poll(ctx, 200*time.Millisecond, func(ctx context.Context) (bool, error) {
		body, err := c.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err == nil && string(body) == "ok", nil
	})
}

// ctr runs the ctr executable against the node's containerd.
func (n node) ctr(ctx context.Context, args ...string) error {
	all := append([]string{"--address", n.containerdAddress(), "--namespace", containerd.Namespace}, args...)
	out, err := exec.CommandContext(ctx, filepath.Join(n.paths.BinDir, "ctr"), all...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// importImages waits until containerd serves, then imports the pause
// image (and pins it, as kedge does) and the node's image tarballs with ctr.
func importImages(ctx context.Context, n node) error {
	err := poll(ctx, 100*time.Millisecond, func(ctx context.Context) (bool, error) {
		return n.ctr(ctx, "version") == nil, nil
	})
	if err != nil {
		return err
	}
	snapshotter := "--snapshotter=" + n.snapshotter()
	if err := n.ctr(ctx, "images", "import", snapshotter, n.paths.PauseImageTar); err != nil {
		return err
	}
	if err := n.ctr(ctx, "images", "label", pauseImage, containerd.PinnedLabel+"="+containerd.PinnedValue); err != nil {
		return err
	}
	for _, img := range n.opts.Images {
		if err := n.ctr(ctx, "images", "import", snapshotter, img); err != nil {
			return err
		}
	}
	return nil
}

// writeCNIConfig waits for flanneld's subnet file and writes the node's
// bridge CNI configuration from it (kedge's renderer): in a conventional
// deployment flannel's CNI plugin reads the same file and delegates to the
// bridge plugin.
func writeCNIConfig(ctx context.Context, n node) error {
	var subnet *net.IPNet
	var mtu int
	err := poll(ctx, 200*time.Millisecond, func(context.Context) (bool, error) {
		subnet, mtu = readSubnetEnv(n.subnetFile())
		return subnet != nil, nil
	})
	if err != nil {
		return err
	}
	return flannel.WriteCNIConfig(n.cniConfDir(), flannel.CNIConfig{Bridge: "cni0", Subnet: subnet, MTU: mtu})
}

// readSubnetEnv reads the node's pod CIDR and MTU from flanneld's subnet
// file; nil before flanneld wrote it.
func readSubnetEnv(path string) (*net.IPNet, int) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0
	}
	defer f.Close()
	var subnet *net.IPNet
	mtu := 0
	s := bufio.NewScanner(f)
	for s.Scan() {
		key, value, _ := strings.Cut(strings.TrimSpace(s.Text()), "=")
		switch key {
		case "FLANNEL_SUBNET":
			if _, n, err := net.ParseCIDR(value); err == nil {
				subnet = n
			}
		case "FLANNEL_MTU":
			mtu, _ = strconv.Atoi(value)
		}
	}
	return subnet, mtu
}

// publishDNS waits until CoreDNS reports ready and publishes the node's
// endpoint of the kube-dns Service (kedge's coredns.PublishEndpoint).
func publishDNS(ctx context.Context, n node) error {
	hc := &http.Client{Timeout: 2 * time.Second}
	err := poll(ctx, 200*time.Millisecond, func(ctx context.Context) (bool, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+coredns.ReadyAddress+"/ready", nil)
		resp, err := hc.Do(req)
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		return err
	}
	c, err := client(n.corednsKubeconfig)
	if err != nil {
		return err
	}
	cfg := coredns.Config{NodeName: n.opts.NodeName, NodeIP: n.opts.NodeIP, ClusterDomain: n.opts.ClusterDomain}
	return poll(ctx, time.Second, func(ctx context.Context) (bool, error) {
		return coredns.PublishEndpoint(ctx, c, cfg) == nil, nil
	})
}

// waitPodCIDR waits until the Node called name has its pod CIDR and an
// annotation, as kedge's flannel waits before it takes its lease (flanneld
// exits without them).
func waitPodCIDR(ctx context.Context, kubeconfig, name string) error {
	c, err := client(kubeconfig)
	if err != nil {
		return err
	}
	return poll(ctx, 500*time.Millisecond, func(ctx context.Context) (bool, error) {
		n, err := c.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		return err == nil && n.Spec.PodCIDR != "" && len(n.Annotations) > 0, nil
	})
}

// labelNode sets the labels the kubelet may not set on its own Node once it
// is registered, with the admin's credentials, as kedge does.
func labelNode(ctx context.Context, adminKubeconfig, name string, labels map[string]string) error {
	_, restricted := nodemeta.SplitLabels(labels)
	if len(restricted) == 0 {
		return nil
	}
	c, err := client(adminKubeconfig)
	if err != nil {
		return err
	}
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"labels": restricted}})
	return poll(ctx, time.Second, func(ctx context.Context) (bool, error) {
		_, err := c.CoreV1().Nodes().Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{})
		return err == nil, nil
	})
}

// nodeReady says whether the Node called name is registered and Ready.
func nodeReady(ctx context.Context, c kubernetes.Interface, name string) (bool, error) {
	n, err := c.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	for _, cond := range n.Status.Conditions {
		if cond.Type == "Ready" {
			return cond.Status == "True", nil
		}
	}
	return false, nil
}
