package diskguard

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apiserver/pkg/endpoints/request"
)

// watchMarks keeps g.marks equal to the servers marked low in etcd, until
// ctx ends; it lists, then watches, and starts again after an error.
func (g *Guard) watchMarks(ctx context.Context) {
	for ctx.Err() == nil {
		if err := g.watchOnce(ctx); err != nil && ctx.Err() == nil {
			g.cfg.Log.Debug("watching the servers' disk marks", "error", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(2 * time.Second):
		}
	}
}

// watchOnce lists the marks and follows their changes.
func (g *Guard) watchOnce(ctx context.Context) error {
	c, err := g.cfg.Etcd()
	if err != nil {
		return err
	}
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	resp, err := c.Get(lctx, KeyPrefix, clientv3.WithPrefix())
	cancel()
	if err != nil {
		return err
	}
	marks := map[string]string{}
	for _, kv := range resp.Kvs {
		marks[strings.TrimPrefix(string(kv.Key), KeyPrefix)] = string(kv.Value)
	}
	g.mu.Lock()
	g.marks = marks
	g.marksChanged()
	if _, ok := marks[g.cfg.Node]; ok {
		g.low = true // marked by a previous run: lifted once a check finds space
	}
	g.mu.Unlock()
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	for wr := range c.Watch(wctx, KeyPrefix, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1)) {
		if err := wr.Err(); err != nil {
			return err
		}
		g.mu.Lock()
		for _, ev := range wr.Events {
			node := strings.TrimPrefix(string(ev.Kv.Key), KeyPrefix)
			if ev.Type == clientv3.EventTypeDelete {
				delete(g.marks, node)
			} else {
				g.marks[node] = string(ev.Kv.Value)
			}
		}
		g.marksChanged()
		g.mu.Unlock()
	}
	return ctx.Err()
}

// Refusal is the message writes are refused with, "" when every server has
// space: the low servers' messages, sorted. It is read on every write
// request, so it is kept ready rather than built per request.
func (g *Guard) Refusal() string {
	if r := g.refusal.Load(); r != nil {
		return *r
	}
	return ""
}

// marksChanged rebuilds Refusal's message; g.mu is held.
func (g *Guard) marksChanged() {
	msgs := make([]string, 0, len(g.marks))
	for _, m := range g.marks {
		msgs = append(msgs, m)
	}
	slices.Sort(msgs)
	r := strings.Join(msgs, "; ")
	g.refusal.Store(&r)
}

// requestInfo parses Kubernetes API paths as the apiserver does.
var requestInfo = request.RequestInfoFactory{
	APIPrefixes:          sets.NewString("api", "apis"),
	GrouplessAPIPrefixes: sets.NewString("api"),
}

// Filter wraps the apiserver's handler: while a server's disk is low,
// the requests that store something new (see stores) from callers with
// credentials are answered 507 Insufficient Storage with the reason; reads,
// deletions, dry runs, Leases, reviews and token requests pass, and so does
// the apiserver's own loopback client (bearer loopbackToken): its
// post-start hooks write the cluster's bootstrap objects (a few small
// ones) and end the process when they cannot, so a new server started on
// a nearly full disk would die instead of serving reads.
func (g *Guard) Filter(next http.Handler, loopbackToken string) http.Handler {
	loopback := []byte("Bearer " + loopbackToken)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet || r.Method == http.MethodHead || r.Method == http.MethodDelete ||
			(loopbackToken != "" && subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), loopback) == 1) {
			next.ServeHTTP(w, r)
			return
		}
		msg := g.Refusal()
		// Only callers with credentials learn why: the others are
		// refused by authentication anyway.
		if msg == "" || !hasCredentials(r) {
			next.ServeHTTP(w, r)
			return
		}
		info, err := requestInfo.NewRequestInfo(r)
		if err != nil || !info.IsResourceRequest || !stores(info) || r.URL.Query().Has("dryRun") {
			next.ServeHTTP(w, r)
			return
		}
		refuse(w, msg)
	})
}

// hasCredentials reports whether r carries a client certificate or an
// Authorization header.
func hasCredentials(r *http.Request) bool {
	return (r.TLS != nil && len(r.TLS.PeerCertificates) > 0) || r.Header.Get("Authorization") != ""
}

// stores reports whether a request writes to etcd and may wait: creates,
// updates and patches, but not those that keep the cluster alive (Leases:
// node heartbeats and leader election, each rewriting one small key) or
// that store nothing (reviews, service account tokens).
func stores(info *request.RequestInfo) bool {
	switch info.Verb {
	case "create", "update", "patch":
	default:
		return false
	}
	switch {
	case info.APIGroup == "coordination.k8s.io" && info.Resource == "leases",
		info.APIGroup == "authentication.k8s.io", info.APIGroup == "authorization.k8s.io",
		info.APIGroup == "" && info.Resource == "serviceaccounts" && info.Subresource == "token":
		return false
	}
	return true
}

// refuse answers 507 with a Status that kubectl prints as is.
func refuse(w http.ResponseWriter, msg string) {
	st := metav1.Status{
		TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
		Status:   metav1.StatusFailure,
		Message:  msg,
		Reason:   "InsufficientStorage",
		Code:     http.StatusInsufficientStorage,
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusInsufficientStorage)
	_ = json.NewEncoder(w).Encode(st)
}
