package linearize

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
)

func TestClassify(t *testing.T) {
	cm := schema.GroupResource{Resource: "configmaps"}
	for _, tc := range []struct {
		name    string
		kind    Kind
		err     error
		sent    bool
		want    Status
		notSent bool
	}{
		{"get: not found", Get, apierrors.NewNotFound(cm, "k"), true, NotFound, false},
		{"update: not found", Update, apierrors.NewNotFound(cm, "k"), true, NotFound, false},
		{"update: conflict", Update, apierrors.NewConflict(cm, "k", errors.New("modified")), true, Conflict, false},
		{"create: already exists", Create, apierrors.NewAlreadyExists(cm, "k"), true, Exists, false},
		{"another object's 404", Get, apierrors.NewNotFound(cm, "other"), true, Unknown, false},
		{"a 404 without details", Get, apierrors.NewGenericServerResponse(404, "GET", cm, "", "", 0, false), true, Unknown, false},
		{"create: conflict", Create, apierrors.NewConflict(cm, "k", errors.New("?")), true, Unknown, false},
		{"etcd timeout", Update, apierrors.NewTimeoutError("etcdserver: request timed out", 2), true, Unknown, false},
		{"too many requests", Create, apierrors.NewTooManyRequests("later", 1), true, Unknown, false},
		{"internal error", Update, apierrors.NewInternalError(errors.New("etcdserver: leader changed")), true, Unknown, false},
		{"client timeout after sending", Update, context.DeadlineExceeded, true, Unknown, false},
		{"connection refused", Update, errors.New("dial tcp: connection refused"), false, Unknown, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := Classify(tc.kind, "k", tc.err, tc.sent)
			if out.Status != tc.want || errors.Is(err, ErrNotSent) != tc.notSent || (tc.want == Unknown) != (err != nil) {
				t.Errorf("Classify: %s, %v; want %s (not sent: %v)", out.Status, err, tc.want, tc.notSent)
			}
		})
	}
}

// fakeAPI answers the ConfigMap requests of KubeStore: k exists at
// resourceVersion 5 with value a; "hang" never answers.
func fakeAPI(t *testing.T) *httptest.Server {
	hang := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]
		status := func(err *apierrors.StatusError) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(int(err.ErrStatus.Code))
			st := err.ErrStatus
			st.APIVersion, st.Kind = "v1", "Status"
			_ = json.NewEncoder(w).Encode(st)
		}
		obj := func(cm corev1.ConfigMap) {
			cm.APIVersion, cm.Kind = "v1", "ConfigMap"
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(cm)
		}
		cmGR := schema.GroupResource{Resource: "configmaps"}
		var body corev1.ConfigMap
		if r.Body != nil {
			_ = json.NewDecoder(r.Body).Decode(&body)
		}
		switch {
		case name == "hang" || body.Name == "hang":
			<-hang
		case r.Method == http.MethodGet && name == "k":
			obj(corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "k", ResourceVersion: "5"}, Data: map[string]string{DataKey: "a"}})
		case r.Method == http.MethodGet:
			status(apierrors.NewNotFound(cmGR, name))
		case r.Method == http.MethodPost && body.Name == "k":
			status(apierrors.NewAlreadyExists(cmGR, "k"))
		case r.Method == http.MethodPost:
			body.ResourceVersion = "6"
			obj(body)
		case r.Method == http.MethodPut && body.ResourceVersion != "5":
			status(apierrors.NewConflict(cmGR, name, errors.New("the object has been modified")))
		case r.Method == http.MethodPut:
			if body.Labels[Label] != "lin" {
				t.Errorf("update without the label: %v", body.Labels)
			}
			body.ResourceVersion = "7"
			obj(body)
		default:
			http.Error(w, "unexpected", http.StatusInternalServerError)
		}
	}))
	t.Cleanup(func() { close(hang); srv.Close() })
	return srv
}

func TestKubeStore(t *testing.T) {
	srv := fakeAPI(t)
	s, err := NewKubeStore(&rest.Config{Host: srv.URL}, "default", "lin")
	if err != nil {
		t.Fatal(err)
	}
	// A closed port: nothing is sent.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + l.Addr().String()
	l.Close()
	refused, err := NewKubeStore(&rest.Config{Host: closed}, "default", "lin")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		store   *KubeStore
		in      Input
		want    Output
		notSent bool
	}{
		{s, get("k"), read("a", "5"), false},
		{s, get("x"), notFound, false},
		{s, create("k", "b"), exists, false},
		{s, create("x", "b"), ok("6"), false},
		{s, update("k", "a", "4", "b"), conflict, false},
		{s, update("k", "a", "5", "b"), ok("7"), false},
		{s, update("hang", "a", "5", "b"), unknown, false},
		{refused, update("k", "a", "5", "b"), unknown, true},
	} {
		t.Run(fmt.Sprintf("%s %s", tc.in.Kind, tc.in.Key), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			defer cancel()
			out, err := tc.store.Do(ctx, tc.in)
			if out != tc.want || errors.Is(err, ErrNotSent) != tc.notSent || (tc.want.Status == Unknown) != (err != nil) {
				t.Errorf("Do: %+v, %v; want %+v (not sent: %v)", out, err, tc.want, tc.notSent)
			}
		})
	}
}
