package diskguard

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestFilter(t *testing.T) {
	g := New(Config{Node: "a"})
	h := g.Filter(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTeapot) }), "loopback-token")
	do := func(method, path string, auth bool) (int, string) {
		r := httptest.NewRequest(method, path, strings.NewReader("{}"))
		if auth {
			r.Header.Set("Authorization", "Bearer x")
		}
		if strings.HasSuffix(path, "#loopback") {
			path = strings.TrimSuffix(path, "#loopback")
			r = httptest.NewRequest(method, path, strings.NewReader("{}"))
			r.Header.Set("Authorization", "Bearer loopback-token")
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code, w.Body.String()
	}
	cases := []struct {
		method, path string
		auth         bool
	}{
		{"POST", "/api/v1/namespaces/default/configmaps", true},
		{"PUT", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/a", true},
		{"PATCH", "/api/v1/nodes/a/status", true},
		{"GET", "/api/v1/namespaces/default/configmaps", true},
		{"DELETE", "/api/v1/namespaces/default/configmaps/x", true},
		{"POST", "/api/v1/namespaces/default/configmaps", false},
		{"POST", "/v1-kedge/node", true},
		{"POST", "/api/v1/namespaces/kube-system/serviceaccounts/hpa/token", true},
		{"POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", true},
		{"POST", "/api/v1/namespaces/default/configmaps?dryRun=All", true},
		{"POST", "/apis/scheduling.k8s.io/v1/priorityclasses#loopback", true},
	}
	// Every server has space: everything passes.
	for _, tc := range cases {
		if code, _ := do(tc.method, tc.path, tc.auth); code != http.StatusTeapot {
			t.Errorf("%s %s with space: %d, want passed on", tc.method, tc.path, code)
		}
	}
	g.mu.Lock()
	g.marks["b"] = "server b: the filesystem of /var/lib/kedge/server/db has 100 MiB free"
	g.marksChanged()
	g.mu.Unlock()
	want := map[string]int{
		"POST /api/v1/namespaces/default/configmaps true":                           http.StatusInsufficientStorage,
		"PUT /apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/a true": http.StatusTeapot,
		"PATCH /api/v1/nodes/a/status true":                                         http.StatusInsufficientStorage,
		"GET /api/v1/namespaces/default/configmaps true":                            http.StatusTeapot,
		"DELETE /api/v1/namespaces/default/configmaps/x true":                       http.StatusTeapot,
		"POST /api/v1/namespaces/default/configmaps false":                          http.StatusTeapot,
		"POST /v1-kedge/node true":                                                  http.StatusTeapot,
		"POST /api/v1/namespaces/kube-system/serviceaccounts/hpa/token true":        http.StatusTeapot,
		"POST /apis/authorization.k8s.io/v1/subjectaccessreviews true":              http.StatusTeapot,
		"POST /api/v1/namespaces/default/configmaps?dryRun=All true":                http.StatusTeapot,
		"POST /apis/scheduling.k8s.io/v1/priorityclasses#loopback true":             http.StatusTeapot, // the apiserver's own bootstrap writes
	}
	for _, tc := range cases {
		key := tc.method + " " + tc.path + " " + map[bool]string{true: "true", false: "false"}[tc.auth]
		code, body := do(tc.method, tc.path, tc.auth)
		if code != want[key] {
			t.Errorf("%s with b low: %d, want %d", key, code, want[key])
		}
		if code == http.StatusInsufficientStorage && (!strings.Contains(body, `"reason":"InsufficientStorage"`) || !strings.Contains(body, "server b")) {
			t.Errorf("%s: body %s", key, body)
		}
	}
}
