package sdnotify

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// NodeReadyPoll is how often NodeReady looks at the Node.
const NodeReadyPoll = time.Second

// NodeReady holds once the Node named node has the condition Ready=True,
// read with kubeconfig.
func NodeReady(kubeconfig, node string) Condition {
	return Condition{
		What: "node " + node + " to be Ready",
		Wait: func(ctx context.Context) error {
			rest, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
			if err != nil {
				return fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
			}
			client, err := kubernetes.NewForConfig(rest)
			if err != nil {
				return fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
			}
			return waitNodeReady(ctx, client, node)
		},
	}
}

// waitNodeReady polls the Node until it is Ready; API errors (the node not
// registered yet, an apiserver still starting) only mean: not yet.
func waitNodeReady(ctx context.Context, client kubernetes.Interface, node string) error {
	return wait.PollUntilContextCancel(ctx, NodeReadyPoll, true, func(ctx context.Context) (bool, error) {
		n, err := client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady {
				return c.Status == corev1.ConditionTrue, nil
			}
		}
		return false, nil
	})
}

// Started holds at once: for a service that is ready when its components
// have started (a server with --disable-agent once the API serves; a node
// without kedge's pod network, which is Ready only once the user installs
// one). what names what has started, for the log.
func Started(what string) Condition {
	return Condition{What: what, Wait: func(context.Context) error { return nil }}
}
