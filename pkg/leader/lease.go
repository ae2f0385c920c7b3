package leader

import (
	"fmt"
	"os"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// Lease returns the election of kedge's own controllers (the cloud
// controller, ServiceLB's allocator): the Lease name in kube-system, with
// the timings upstream controllers use (15 s lease, 10 s renew deadline,
// 2 s retry) and an identity of this host and a fresh UUID.
func Lease(client kubernetes.Interface, name string) (leaderelection.LeaderElectionConfig, error) {
	host, _ := os.Hostname()
	lock, err := resourcelock.New(resourcelock.LeasesResourceLock, metav1.NamespaceSystem, name,
		client.CoreV1(), client.CoordinationV1(), resourcelock.ResourceLockConfig{Identity: host + "_" + string(uuid.NewUUID())})
	if err != nil {
		return leaderelection.LeaderElectionConfig{}, fmt.Errorf("leader election lock %s: %w", name, err)
	}
	return leaderelection.LeaderElectionConfig{Lock: lock, Name: name,
		LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: 2 * time.Second}, nil
}
