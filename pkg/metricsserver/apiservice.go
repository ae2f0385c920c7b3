package metricsserver

import (
	"context"
	"encoding/json"
	"fmt"
	"os"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	aggregator "k8s.io/kube-aggregator/pkg/client/clientset_generated/clientset"
	"k8s.io/utils/ptr"
)

// APIServiceName is the APIService of the Metrics API
// (manifests/metrics-server.yaml).
const APIServiceName = "v1beta1.metrics.k8s.io"

// FieldManager owns the APIService's spec.caBundle; the manifests
// controller ("kedge") owns the rest, and deletes the APIService with
// --disable metrics-server.
const FieldManager = "kedge-metrics-server"

// caBundlePatch is the server-side apply patch that sets the APIService's
// caBundle to the PEM certificates caPEM.
func caBundlePatch(caPEM []byte) ([]byte, error) {
	return json.Marshal(map[string]any{
		"apiVersion": "apiregistration.k8s.io/v1",
		"kind":       "APIService",
		"metadata":   map[string]any{"name": APIServiceName},
		"spec":       map[string]any{"caBundle": caPEM}, // []byte: base64, as the field is
	})
}

// setCABundle sets the APIService's caBundle to the file caFile. The
// manifests controller created the APIService before this component
// starts.
func setCABundle(ctx context.Context, admin *rest.Config, caFile string) error {
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return err
	}
	patch, err := caBundlePatch(caPEM)
	if err != nil {
		return err
	}
	client, err := aggregator.NewForConfig(admin)
	if err != nil {
		return err
	}
	_, err = client.ApiregistrationV1().APIServices().Patch(ctx, APIServiceName, types.ApplyPatchType, patch,
		metav1.PatchOptions{FieldManager: FieldManager, Force: ptr.To(true)})
	if err != nil {
		return fmt.Errorf("APIService %s: set caBundle: %w", APIServiceName, err)
	}
	return nil
}
