package flannel

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// serveFakeAPI serves the Node API of a fake clientset over HTTP and returns
// a kubeconfig for it. flannel's kube subnet manager builds its own client
// from a kubeconfig file, so a fake clientset can only drive it this way.
// It serves what flannel and kedge call: get, list and watch Nodes, and
// patch a Node or its status.
func serveFakeAPI(t *testing.T, client *fake.Clientset) string {
	t.Helper()
	srv := httptest.NewServer(&fakeAPI{client: client})
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
	})
	kc := clientcmdapi.NewConfig()
	kc.Clusters["fake"] = &clientcmdapi.Cluster{Server: srv.URL}
	kc.AuthInfos["fake"] = &clientcmdapi.AuthInfo{}
	kc.Contexts["fake"] = &clientcmdapi.Context{Cluster: "fake", AuthInfo: "fake"}
	kc.CurrentContext = "fake"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	return path
}

type fakeAPI struct {
	client *fake.Clientset
}

func (a *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	nodes := a.client.CoreV1().Nodes()
	ctx := r.Context()
	rest, ok := strings.CutPrefix(r.URL.Path, "/api/v1/nodes")
	parts := strings.Split(strings.Trim(rest, "/"), "/")
	switch {
	case !ok:
		writeError(w, apierrors.NewNotFound(corev1.Resource("unknown"), r.URL.Path))
	case rest == "" && r.Method == http.MethodGet && r.URL.Query().Get("watch") == "true":
		if r.URL.Query().Has("sendInitialEvents") {
			// client-go falls back to list and watch.
			writeError(w, apierrors.NewBadRequest("watch-list is not supported"))
			return
		}
		watcher, err := nodes.Watch(ctx, metav1.ListOptions{})
		if err != nil {
			writeError(w, err)
			return
		}
		defer watcher.Stop()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		enc := json.NewEncoder(w)
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-watcher.ResultChan():
				if !ok {
					return
				}
				raw, err := encode(ev.Object)
				if err != nil {
					return
				}
				if err := enc.Encode(metav1.WatchEvent{Type: string(ev.Type), Object: runtime.RawExtension{Raw: raw}}); err != nil {
					return
				}
				w.(http.Flusher).Flush()
			}
		}
	case rest == "" && r.Method == http.MethodGet:
		list, err := nodes.List(ctx, metav1.ListOptions{})
		writeObject(w, list, err)
	case len(parts) == 1 && r.Method == http.MethodGet:
		node, err := nodes.Get(ctx, parts[0], metav1.GetOptions{})
		writeObject(w, node, err)
	case (len(parts) == 1 || len(parts) == 2 && parts[1] == "status") && r.Method == http.MethodPatch:
		body, err := io.ReadAll(r.Body)
		if err != nil {
			writeError(w, err)
			return
		}
		pt := types.PatchType(strings.Split(r.Header.Get("Content-Type"), ";")[0])
		node, err := nodes.Patch(ctx, parts[0], pt, body, metav1.PatchOptions{}, parts[1:]...)
		writeObject(w, node, err)
	default:
		writeError(w, apierrors.NewMethodNotSupported(corev1.Resource("nodes"), r.Method))
	}
}

// encode serializes a core/v1 object as JSON, with its kind and apiVersion.
func encode(obj runtime.Object) ([]byte, error) {
	return runtime.Encode(scheme.Codecs.LegacyCodec(corev1.SchemeGroupVersion), obj)
}

func writeObject(w http.ResponseWriter, obj runtime.Object, err error) {
	if err != nil {
		writeError(w, err)
		return
	}
	raw, err := encode(obj)
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(raw)
}

func writeError(w http.ResponseWriter, err error) {
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		status = apierrors.NewInternalError(err)
	}
	s := status.Status()
	s.Kind, s.APIVersion = "Status", "v1"
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(int(s.Code))
	_ = json.NewEncoder(w).Encode(s)
}
