package metricsserver

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	aggregator "k8s.io/kube-aggregator/pkg/client/clientset_generated/clientset"
	"k8s.io/utils/ptr"

	"github.com/kedge-io/kedge/pkg/pki"
)

// APIServiceName is the APIService of the Metrics API.
const APIServiceName = "v1beta1.metrics.k8s.io"

// OwnerClusterRole is the ClusterRole of manifests/metrics-server.yaml that
// owns the APIService: --disable metrics-server deletes it, and the garbage
// collector the APIService.
const OwnerClusterRole = "kedge:metrics-server"

// sliceSettle is how old the Service's EndpointSlice must be before the
// APIService is registered (creation times have a resolution of 1 s).
const sliceSettle = 2 * time.Second

// FieldManager is the server-side apply manager of the APIService.
const FieldManager = "kedge-metrics-server"

// apiServicePatch is the server-side apply patch of the APIService: on the
// metrics-server Service, verified with the PEM certificates caPEM, owned
// by the ClusterRole of uid.
func apiServicePatch(caPEM []byte, uid types.UID) ([]byte, error) {
	return json.Marshal(map[string]any{
		"apiVersion": "apiregistration.k8s.io/v1",
		"kind":       "APIService",
		"metadata": map[string]any{
			"name":   APIServiceName,
			"labels": map[string]string{"k8s-app": "metrics-server"},
			"ownerReferences": []metav1.OwnerReference{{
				APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRole", Name: OwnerClusterRole, UID: uid,
			}},
		},
		"spec": map[string]any{
			"service":              map[string]any{"name": ServiceName, "namespace": metav1.NamespaceSystem, "port": 443},
			"group":                "metrics.k8s.io",
			"version":              "v1beta1",
			"caBundle":             caPEM, // []byte: base64, as the field is
			"groupPriorityMinimum": 100,
			"versionPriority":      100,
		},
	})
}

// register applies the APIService once metrics-server answers on addr
// (its /healthz, over TLS verified as the aggregator does) and the
// Service's EndpointSlice exists: before that, the aggregator would log
// its failing checks. It retries until it succeeds or ctx ends.
func register(ctx context.Context, admin *rest.Config, client kubernetes.Interface, addr, caFile, proxyCAFile string, log *slog.Logger) {
	for {
		err := registerOnce(ctx, admin, client, addr, caFile, proxyCAFile)
		if err == nil {
			log.Debug("APIService registered", "name", APIServiceName)
			return
		}
		log.Debug("APIService not registered yet", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// registerOnce is one attempt of register.
func registerOnce(ctx context.Context, admin *rest.Config, client kubernetes.Interface, addr, caFile, proxyCAFile string) error {
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return err
	}
	proxyCAPEM, err := os.ReadFile(proxyCAFile)
	if err != nil {
		return err
	}
	if err := healthy(ctx, addr, caPEM, proxyCAPEM); err != nil {
		return err
	}
	slice, err := client.DiscoveryV1().EndpointSlices(metav1.NamespaceSystem).Get(ctx, ServiceName, metav1.GetOptions{})
	if err != nil {
		return err
	}
	// The aggregator resolves the Service from its informer's cache: give
	// it a moment to see a slice that was just created.
	if age := time.Since(slice.CreationTimestamp.Time); age < sliceSettle {
		return fmt.Errorf("EndpointSlice %s created %s ago", ServiceName, age.Round(time.Millisecond))
	}
	owner, err := client.RbacV1().ClusterRoles().Get(ctx, OwnerClusterRole, metav1.GetOptions{})
	if err != nil {
		return err // not applied (yet), or --disable metrics-server
	}
	patch, err := apiServicePatch(caPEM, owner.UID)
	if err != nil {
		return err
	}
	agg, err := aggregator.NewForConfig(admin)
	if err != nil {
		return err
	}
	_, err = agg.ApiregistrationV1().APIServices().Patch(ctx, APIServiceName, types.ApplyPatchType, patch,
		metav1.PatchOptions{FieldManager: FieldManager, Force: ptr.To(true)})
	if err != nil {
		return fmt.Errorf("APIService %s: %w", APIServiceName, err)
	}
	return nil
}

// healthy checks that metrics-server at addr serves /healthz with a
// certificate for pki.MetricsServerDNSName of the CA caPEM, and asks for
// client certificates of the front-proxy CA proxyCAPEM. Until it does (its
// client CA bundle loads a moment after it serves), the aggregator's
// client sends no certificate, and its checks fail with 403.
func healthy(ctx context.Context, addr string, caPEM, proxyCAPEM []byte) error {
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return errors.New("no certificate in the server CA file")
	}
	block, _ := pem.Decode(proxyCAPEM)
	if block == nil {
		return errors.New("no certificate in the front-proxy CA file")
	}
	proxyCA, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return err
	}
	var asksProxyCA atomic.Bool
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{
			RootCAs: roots, ServerName: pki.MetricsServerDNSName, MinVersion: tls.VersionTLS12,
			GetClientCertificate: func(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
				asksProxyCA.Store(slices.ContainsFunc(cri.AcceptableCAs, func(s []byte) bool { return bytes.Equal(s, proxyCA.RawSubject) }))
				return &tls.Certificate{}, nil // none: /healthz is open
			},
		},
		DisableKeepAlives: true,
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addr+"/healthz", nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s/healthz: %s", addr, resp.Status)
	}
	if !asksProxyCA.Load() {
		return fmt.Errorf("%s does not ask for client certificates of the front-proxy CA yet", addr)
	}
	return nil
}

// localAddr is where this process reaches its metrics-server bound to
// bind: loopback for an unspecified address.
func localAddr(bind net.IP) string {
	if bind == nil || bind.IsUnspecified() {
		bind = net.IPv4(127, 0, 0, 1)
	}
	return net.JoinHostPort(bind.String(), strconv.Itoa(Port))
}
