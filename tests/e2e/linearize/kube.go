package linearize

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptrace"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// DataKey is the ConfigMap data key that holds the value.
const DataKey = "v"

// Label marks the ConfigMaps of the workload (value: the Prefix).
const Label = "kedge.io/linearize"

// KubeStore is a Store of ConfigMaps in one namespace, through one
// connection to an apiserver. Requests are never retried (client-go would
// retry a write after a Retry-After answer, turning a write that applied
// into an AlreadyExists or a Conflict).
type KubeStore struct {
	rc    rest.Interface
	ns    string
	label string
}

var _ Store = (*KubeStore)(nil)

// NewKubeStore returns a store for the ConfigMaps labelled Label=label in
// namespace ns. cfg's rate limits are lifted.
func NewKubeStore(cfg *rest.Config, ns, label string) (*KubeStore, error) {
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = -1, 0 // no client-side rate limiting
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &KubeStore{rc: cs.CoreV1().RESTClient(), ns: ns, label: label}, nil
}

// Do implements Store.
func (s *KubeStore) Do(ctx context.Context, in Input) (Output, error) {
	var sent atomic.Bool
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteHeaders: func() { sent.Store(true) },
		WroteRequest: func(httptrace.WroteRequestInfo) { sent.Store(true) },
	})
	var got corev1.ConfigMap
	var err error
	switch in.Kind {
	case Get:
		err = s.rc.Get().Namespace(s.ns).Resource("configmaps").Name(in.Key).MaxRetries(0).Do(ctx).Into(&got)
	case Create:
		err = s.rc.Post().Namespace(s.ns).Resource("configmaps").Body(s.object(in.Key, in.Value, "")).MaxRetries(0).Do(ctx).Into(&got)
	case Update:
		err = s.rc.Put().Namespace(s.ns).Resource("configmaps").Name(in.Key).Body(s.object(in.Key, in.Value, in.PrevRV)).MaxRetries(0).Do(ctx).Into(&got)
	default:
		return Output{}, fmt.Errorf("unknown kind %v", in.Kind)
	}
	if err != nil {
		return Classify(in.Kind, in.Key, err, sent.Load())
	}
	out := Output{Status: OK, RV: got.ResourceVersion}
	if in.Kind == Get {
		out.Value = got.Data[DataKey]
	}
	return out, nil
}

func (s *KubeStore) object(name, value, rv string) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: s.ns, ResourceVersion: rv, Labels: map[string]string{Label: s.label}},
		Data:       map[string]string{DataKey: value},
	}
}

// Classify turns a failed request into a definite Output (nil error) or an
// error: wrapping ErrNotSent if nothing was sent, else the operation is
// Unknown. Only the answers about the key that say the operation did not
// apply are definite: 404 (reads, updates), 409 (Conflict for an update,
// AlreadyExists for a create).
// Every other answer (5xx, 429, a timeout) and every lost connection
// leaves it Unknown: the apiserver may have proposed it to etcd.
func Classify(kind Kind, key string, err error, sent bool) (Output, error) {
	var status apierrors.APIStatus
	if errors.As(err, &status) && status.Status().Code != 0 {
		// Only an answer about this very object: a 404 for a path the
		// apiserver does not serve (yet) is not one.
		if d := status.Status().Details; d != nil && d.Name == key && d.Kind == "configmaps" {
			switch {
			case kind != Create && apierrors.IsNotFound(err):
				return Output{Status: NotFound}, nil
			case kind == Update && apierrors.IsConflict(err):
				return Output{Status: Conflict}, nil
			case kind == Create && apierrors.IsAlreadyExists(err):
				return Output{Status: Exists}, nil
			}
		}
		return Output{Status: Unknown}, err
	}
	if !sent {
		return Output{Status: Unknown}, fmt.Errorf("%w: %w", ErrNotSent, err)
	}
	return Output{Status: Unknown}, err
}

// List reads every ConfigMap of the store's label (a consistent list).
func (s *KubeStore) List(ctx context.Context) (map[string]Final, error) {
	var list corev1.ConfigMapList
	err := s.rc.Get().Namespace(s.ns).Resource("configmaps").
		VersionedParams(&metav1.ListOptions{LabelSelector: Label + "=" + s.label}, metav1.ParameterCodec).
		MaxRetries(0).Do(ctx).Into(&list)
	if err != nil {
		return nil, err
	}
	out := map[string]Final{}
	for _, cm := range list.Items {
		out[cm.Name] = Final{Exists: true, Value: cm.Data[DataKey]}
	}
	return out, nil
}
