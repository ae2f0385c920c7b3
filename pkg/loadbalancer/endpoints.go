package loadbalancer

import (
	"context"
	"net"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

func endpointSubsets(items []corev1.Endpoints) []corev1.EndpointSubset {
	var out []corev1.EndpointSubset
	for _, ep := range items {
		out = append(out, ep.Subsets...)
	}
	return out
}

// watchEndpoints keeps the server list equal to the addresses of the
// default/kubernetes Endpoints (every apiserver registers itself there),
// polling through the balancer itself. The list is only replaced when the
// Endpoints name at least one server, so a transient empty answer never
// leaves the node without servers.
func (lb *LoadBalancer) watchEndpoints(ctx context.Context) {
	rest, err := clientcmd.BuildConfigFromFlags("", lb.cfg.Kubeconfig)
	if err != nil {
		lb.cfg.Log.Error("apiserver load balancer: kubeconfig", "component", "loadbalancer", "err", err)
		return
	}
	rest.Timeout = 10 * time.Second
	client, err := kubernetes.NewForConfig(rest)
	if err != nil {
		return
	}
	var lastErr string
	for {
		// List, not Get: kube-proxy's role (system:node-proxier) may list
		// and watch endpoints but not get them.
		eps, err := client.CoreV1().Endpoints(metav1.NamespaceDefault).List(ctx, metav1.ListOptions{FieldSelector: "metadata.name=kubernetes"})
		if err != nil && err.Error() != lastErr && ctx.Err() == nil {
			lb.cfg.Log.Warn("apiserver load balancer cannot read the kubernetes Endpoints", "component", "loadbalancer", "err", err)
		}
		if err != nil {
			lastErr = err.Error()
		} else {
			lastErr = ""
			var servers []string
			for _, subset := range endpointSubsets(eps.Items) {
				for _, port := range subset.Ports {
					if port.Name != "https" {
						continue
					}
					for _, addr := range subset.Addresses {
						servers = append(servers, net.JoinHostPort(addr.IP, strconv.Itoa(int(port.Port))))
					}
				}
			}
			if len(servers) > 0 {
				lb.Update(servers)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(lb.cfg.EndpointsInterval):
		}
	}
}
