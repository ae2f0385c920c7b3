package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
)

// fakeAPI is just enough of an apiserver for the load: namespaces, and
// ConfigMap create and list in one namespace, stored in memory.
type fakeAPI struct {
	mu       sync.Mutex
	cms      map[string]corev1.ConfigMap
	conns    map[string]bool // remote addresses seen: one per connection
	inflight atomic.Int32
	maxIn    atomic.Int32
	failAt   int // the failAt-th create answers 500 (0: never)
	creates  int
	lists    int
	delay    time.Duration
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := f.inflight.Add(1)
	defer f.inflight.Add(-1)
	for m := f.maxIn.Load(); n > m && !f.maxIn.CompareAndSwap(m, n); m = f.maxIn.Load() {
	}
	time.Sleep(f.delay) // let requests overlap
	f.mu.Lock()
	defer f.mu.Unlock()
	f.conns[r.RemoteAddr] = true
	w.Header().Set("Content-Type", "application/json")
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/api/v1/namespaces":
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"kind":"Namespace","apiVersion":"v1","metadata":{"name":"load"}}`))
	case r.Method == http.MethodPost && r.URL.Path == "/api/v1/namespaces/load/configmaps":
		f.creates++
		if f.creates == f.failAt {
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = w.Write([]byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","message":"boom","code":500}`))
			return
		}
		var cm corev1.ConfigMap
		if err := json.NewDecoder(r.Body).Decode(&cm); err != nil || cm.Name == "" {
			http.Error(w, "bad configmap", http.StatusBadRequest)
			return
		}
		if _, dup := f.cms[cm.Name]; dup {
			w.WriteHeader(http.StatusConflict)
			_, _ = fmt.Fprintf(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"AlreadyExists","code":409}`)
			return
		}
		f.cms[cm.Name] = cm
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(cm)
	case r.Method == http.MethodGet && r.URL.Path == "/api/v1/namespaces/load/configmaps":
		f.lists++
		list := corev1.ConfigMapList{TypeMeta: metav1.TypeMeta{Kind: "ConfigMapList", APIVersion: "v1"}}
		for _, cm := range f.cms {
			list.Items = append(list.Items, cm)
		}
		_ = json.NewEncoder(w).Encode(list)
	default:
		http.Error(w, r.Method+" "+r.URL.Path, http.StatusNotFound)
	}
}

func newFakeAPI(t *testing.T, failAt int) (*fakeAPI, *rest.Config) {
	f := &fakeAPI{cms: map[string]corev1.ConfigMap{}, conns: map[string]bool{}, failAt: failAt, delay: 2 * time.Millisecond}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	// JSON on the wire; the clientset defaults to protobuf otherwise.
	return f, &rest.Config{Host: srv.URL, QPS: -1, ContentConfig: rest.ContentConfig{ContentType: "application/json"}}
}

func TestAPILoad(t *testing.T) {
	f, cfg := newFakeAPI(t, 0)
	lc := LoadConfig{Namespace: "load", Creates: 300, Clients: 8, Lists: 12, DataBytes: 10}
	res, err := APILoad(context.Background(), cfg, lc)
	if err != nil {
		t.Fatal(err)
	}
	if f.creates != 300 || len(f.cms) != 300 || f.lists != 12 {
		t.Errorf("server saw %d creates (%d stored), %d lists; want 300, 12", f.creates, len(f.cms), f.lists)
	}
	if cm := f.cms["bench-00299"]; cm.Data["v"] != strings.Repeat("x", 10) {
		t.Errorf("last ConfigMap: %+v", cm)
	}
	if len(res.Creates) != 300 || len(res.Lists) != 12 || res.ListedObjects != 300 {
		t.Errorf("result: %d creates, %d lists, %d listed", len(res.Creates), len(res.Lists), res.ListedObjects)
	}
	for i, d := range res.Creates {
		if d < f.delay {
			t.Fatalf("create %d latency %v is below the server's %v delay", i, d, f.delay)
		}
	}
	// Each client has a connection of its own (plus none other) and they overlap.
	if len(f.conns) != lc.Clients {
		t.Errorf("%d connections, want one per client (%d)", len(f.conns), lc.Clients)
	}
	if f.maxIn.Load() < 2 {
		t.Errorf("at most %d request in flight: the clients did not run concurrently", f.maxIn.Load())
	}
	if tp := res.Throughput(); tp <= 0 || res.CreateWall <= 0 || tp != float64(300)/res.CreateWall.Seconds() {
		t.Errorf("throughput %v over %v", tp, res.CreateWall)
	}
	// The serial floor: 300 creates at ≥2 ms each over 8 clients.
	if res.CreateWall < 300/8*f.delay {
		t.Errorf("wall %v below the floor %v", res.CreateWall, 300/8*f.delay)
	}
}

func TestAPILoadAlreadyExists(t *testing.T) {
	f, cfg := newFakeAPI(t, 0)
	f.cms["bench-00007"] = corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "bench-00007"}}
	res, err := APILoad(context.Background(), cfg, LoadConfig{Namespace: "load", Creates: 20, Clients: 2, Lists: 1})
	if err != nil || res.Retried != 1 || len(f.cms) != 20 {
		t.Errorf("err %v, retried %d, stored %d; want a stored create counted once", err, res.Retried, len(f.cms))
	}
}

func TestAPILoadFailsOnError(t *testing.T) {
	_, cfg := newFakeAPI(t, 50)
	_, err := APILoad(context.Background(), cfg, LoadConfig{Namespace: "load", Creates: 200, Clients: 4, Lists: 1})
	if err == nil || !strings.Contains(err.Error(), "boom") {
		t.Errorf("err = %v, want the 500 of the 50th create", err)
	}
	if _, err := APILoad(context.Background(), cfg, LoadConfig{Namespace: "load"}); err == nil {
		t.Error("a load of nothing succeeded")
	}
}
