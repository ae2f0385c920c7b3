package loadbalancer

import (
	"context"
	"net"
	"strconv"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

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
	for {
		ep, err := client.CoreV1().Endpoints(metav1.NamespaceDefault).Get(ctx, "kubernetes", metav1.GetOptions{})
		if err == nil {
			var servers []string
			for _, subset := range ep.Subsets {
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
