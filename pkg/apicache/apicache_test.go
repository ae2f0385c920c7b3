package apicache

import (
	"context"
	"encoding/base64"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

// rig is a cache in front of an apiserver, and the kubelet's client.
type rig struct {
	t                  *testing.T
	dir                string
	api                *apiserver
	cfg                Config
	cache              *Cache
	kubeletCert, kKey  string
	strangerCert, sKey string
}

func newRig(t *testing.T) *rig {
	dir := t.TempDir()
	serverCA, clientCA := newTestCA(t, dir, "server-ca"), newTestCA(t, dir, "client-ca")
	r := &rig{t: t, dir: dir, api: newAPIServer(t, serverCA, dir)}
	r.kubeletCert, r.kKey = clientCA.issue(t, dir, "system:node:n1", false)
	r.strangerCert, r.sKey = clientCA.issue(t, dir, "system:node:n2", false)
	r.cfg = Config{Listen: "127.0.0.1:0", Upstream: "https://" + r.api.addr, Dir: filepath.Join(dir, "apicache"), NodeName: "n1",
		ClientCert: r.kubeletCert, ClientKey: r.kKey, ServerCA: serverCA.file, ClientCA: clientCA.file,
		ProbeInterval: 100 * time.Millisecond, Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	return r
}

// start starts a cache (again: a restarted kedge) on a free port.
func (r *rig) start() {
	r.cache = New(r.cfg)
	if err := r.cache.Start(context.Background()); err != nil {
		r.t.Fatal(err)
	}
	r.cache.cfg.Listen = r.cache.ln.Addr().String()
	r.t.Cleanup(func() { _ = r.cache.Stop(context.Background()) })
}

func (r *rig) restartCache() {
	if err := r.cache.Stop(context.Background()); err != nil {
		r.t.Fatal(err)
	}
	r.start()
}

// client is a clientset of certFile through the cache, with the kubelet's
// defaults (protobuf).
func (r *rig) client(certFile, keyFile string) kubernetes.Interface {
	c, err := kubernetes.NewForConfig(&rest.Config{Host: r.cache.URL(), ContentConfig: rest.ContentConfig{ContentType: "application/vnd.kubernetes.protobuf"},
		TLSClientConfig: rest.TLSClientConfig{CAFile: r.cache.CAFile(), CertFile: certFile, KeyFile: keyFile}, Timeout: 5 * time.Second})
	if err != nil {
		r.t.Fatal(err)
	}
	return c
}

// podInformer runs the kubelet's pod source: a reflector on the pods of n1.
func (r *rig) podInformer(client kubernetes.Interface) cache.SharedIndexInformer {
	lw := cache.NewListWatchFromClient(client.CoreV1().RESTClient(), "pods", metav1.NamespaceAll, fields.OneTermEqualSelector("spec.nodeName", "n1"))
	inf := cache.NewSharedIndexInformer(lw, &corev1.Pod{}, 0, cache.Indexers{})
	ctx, cancel := context.WithCancel(context.Background())
	r.t.Cleanup(cancel)
	go inf.Run(ctx.Done())
	return inf
}

func podNames(inf cache.SharedIndexInformer) []string {
	var names []string
	for _, o := range inf.GetStore().List() {
		names = append(names, o.(*corev1.Pod).Name)
	}
	slices.Sort(names)
	return names
}

func waitPods(t *testing.T, inf cache.SharedIndexInformer, want []string) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < 20*time.Second {
		if inf.HasSynced() && slices.Equal(podNames(inf), want) {
			return time.Since(start)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("pods %v (synced %v), want %v", podNames(inf), inf.HasSynced(), want)
	return 0
}

func tokenRequest(c kubernetes.Interface) (*authnv1.TokenRequest, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return c.CoreV1().ServiceAccounts("default").CreateToken(ctx, "default", &authnv1.TokenRequest{
		Spec: authnv1.TokenRequestSpec{Audiences: []string{"api"}, BoundObjectRef: &authnv1.BoundObjectReference{Kind: "Pod", Name: "p1"}}}, metav1.CreateOptions{})
}

// TestOfflineRestart: the kubelet's pods and tokens, cached while a server
// answered, are served after a restart of the cache while none does; writes
// fail; when the server is back the held watch ends and the kubelet sees
// the live pods (one deleted meanwhile is gone).
func TestOfflineRestart(t *testing.T) {
	r := newRig(t)
	r.api.setPod("p1", false)
	r.api.setPod("p2", false)
	r.start()
	kubelet := r.client(r.kubeletCert, r.kKey)
	waitPods(t, r.podInformer(kubelet), []string{"p1", "p2"})
	online, err := tokenRequest(kubelet)
	if err != nil {
		t.Fatal(err)
	}

	// No server; the cache restarts (kedge restarted) and a new kubelet
	// lists its pods from it.
	r.api.stop()
	r.restartCache()
	kubelet = r.client(r.kubeletCert, r.kKey)
	offline := r.podInformer(kubelet)
	took := waitPods(t, offline, []string{"p1", "p2"})
	t.Logf("offline: the pod source synced from the cache in %v", took)
	tok, err := tokenRequest(kubelet)
	if err != nil || tok.Status.Token != online.Status.Token {
		t.Fatalf("offline token request: %v, %v; want the cached %q", tok, err, online.Status.Token)
	}
	_, err = kubelet.CoreV1().ConfigMaps("default").Create(context.Background(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.CreateOptions{})
	if !apierrors.IsServiceUnavailable(err) {
		t.Errorf("offline write: %v, want 503", err)
	}
	if _, err := kubelet.CoreV1().Secrets("default").Get(context.Background(), "never-read", metav1.GetOptions{}); !apierrors.IsServiceUnavailable(err) {
		t.Errorf("offline get of what was never cached: %v, want 503", err)
	}

	// The files: the cache's directory 0700, every file 0600.
	files, _ := filepath.Glob(filepath.Join(r.cfg.Dir, "objects", "*"))
	if len(files) < 2 {
		t.Fatalf("cache files %v", files)
	}
	for _, f := range append(files, filepath.Join(r.cfg.Dir, "objects")) {
		st, _ := os.Stat(f)
		if want := os.FileMode(0o600); st.IsDir() && st.Mode().Perm() != 0o700 || !st.IsDir() && st.Mode().Perm() != want {
			t.Errorf("%s: mode %v", f, st.Mode().Perm())
		}
	}

	// p2 is deleted while the node is offline; the server comes back.
	r.api.setPod("p2", true)
	back := time.Now()
	r.api.start(r.api.addr)
	took = waitPods(t, offline, []string{"p1"})
	t.Logf("online again: the kubelet's pods are the live ones %v after the server came back", took)
	if time.Since(back) > 10*time.Second {
		t.Errorf("reconnection took %v", time.Since(back))
	}
}

// TestOnlyThisNodesKubelet: another node's certificate gets 403, and a
// request without one does not connect.
func TestOnlyThisNodesKubelet(t *testing.T) {
	r := newRig(t)
	r.start()
	stranger := r.client(r.strangerCert, r.sKey)
	_, err := stranger.CoreV1().Pods("").List(context.Background(), metav1.ListOptions{})
	if !apierrors.IsForbidden(err) {
		t.Errorf("another node's kubelet: %v, want 403", err)
	}
	anon, err := kubernetes.NewForConfig(&rest.Config{Host: r.cache.URL(), TLSClientConfig: rest.TLSClientConfig{CAFile: r.cache.CAFile()}, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := anon.CoreV1().Pods("").List(context.Background(), metav1.ListOptions{}); err == nil {
		t.Errorf("a client without a certificate: %v, want a TLS failure", err)
	}
	if r.api.requests != 0 {
		t.Errorf("%d requests reached the apiserver", r.api.requests)
	}
}

// TestExpiredTokenNotServed: a cached token about to expire is not served.
func TestExpiredTokenNotServed(t *testing.T) {
	st, err := openStore(t.TempDir(), slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	p, err := newProxy(Config{Upstream: "https://127.0.0.1:1", NodeName: "n1", Log: slog.Default()}, st, http.DefaultTransport)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		expires time.Duration
		code    int
	}{{30 * time.Second, http.StatusServiceUnavailable}, {time.Hour, http.StatusCreated}} {
		st.putObject("t", http.StatusCreated, []byte(`{"kind":"TokenRequest"}`), time.Now().Add(c.expires))
		w := httptest.NewRecorder()
		p.serveCached(w, httptest.NewRequest(http.MethodPost, "/api/v1/namespaces/default/serviceaccounts/default/token", nil), request{class: token, key: "t"})
		if w.Code != c.code {
			t.Errorf("a token expiring in %v: %d, want %d", c.expires, w.Code, c.code)
		}
	}
}

// TestTokenExpiry: a JWT's exp claim decides, not the answer's timestamp.
func TestTokenExpiry(t *testing.T) {
	exp := time.Unix(time.Now().Add(365*24*time.Hour).Unix(), 0)
	claims := base64.RawURLEncoding.EncodeToString([]byte(`{"exp":` + strconv.FormatInt(exp.Unix(), 10) + `}`))
	tr := authnv1.TokenRequest{Status: authnv1.TokenRequestStatus{Token: "h." + claims + ".s", ExpirationTimestamp: metav1.NewTime(time.Now().Add(time.Hour))}}
	if got := tokenExpiry(tr); !got.Equal(exp) {
		t.Errorf("JWT expiry %v, want %v", got, exp)
	}
	tr.Status.Token = "opaque"
	if got := tokenExpiry(tr); !got.Equal(tr.Status.ExpirationTimestamp.Time) {
		t.Errorf("opaque token expiry %v, want the status's", got)
	}
}

// TestStorePersistsAndPrunes: entries survive a reopening, and pruning
// removes their files.
func TestStorePersistsAndPrunes(t *testing.T) {
	dir := t.TempDir()
	st, err := openStore(dir, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	st.putObject("k", 201, []byte(`{}`), time.Now().Add(30*time.Second))
	if err := st.flush(0); err != nil {
		t.Fatal(err)
	}
	st, err = openStore(dir, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	if e, ok := st.get("k"); !ok || e.Code != 201 {
		t.Fatalf("reloaded entry %+v %v", e, ok)
	}
	if err := st.flush(time.Nanosecond); err != nil {
		t.Fatal(err)
	}
	if files, _ := filepath.Glob(filepath.Join(dir, "*.json")); len(files) != 0 || st.len() != 0 {
		t.Errorf("pruned store keeps %v", files)
	}
}

// TestPageNotCached: a page of a LIST is not taken for the collection.
func TestPageNotCached(t *testing.T) {
	st, err := openStore(t.TempDir(), slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	if err := st.putList("k", []byte(`{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"5","continue":"abc"},"items":[]}`)); err != nil {
		t.Fatal(err)
	}
	if _, ok := st.get("k"); ok {
		t.Error("a first page was cached as the whole list")
	}
	if err := st.putList("k", []byte(`{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"5"},"items":[{"metadata":{"namespace":"a","name":"p"}}]}`)); err != nil {
		t.Fatal(err)
	}
	if e, ok := st.get("k"); !ok || len(e.Items) != 1 || e.ResourceVersion != "5" {
		t.Errorf("whole list: %+v, %v", e, ok)
	}
}
