package apicache

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	apirequest "k8s.io/apiserver/pkg/endpoints/request"
)

// maxBody bounds what the cache reads of one answer (a LIST of a large
// cluster's Services fits).
const maxBody = 64 << 20

// class is what the cache does with a request.
type class int

const (
	passThrough class = iota // forwarded, never cached (writes, discovery …)
	collection               // a LIST or WATCH: cached as a collection
	object                   // a GET of one object
	token                    // a service account token request
)

// request is a classified request.
type request struct {
	class   class
	key     string
	watch   bool
	initial bool          // a watch that asks for its initial events
	timeout time.Duration // a watch's timeoutSeconds
}

type ctxKey struct{}

// proxy is the cache's HTTP handler.
type proxy struct {
	cfg   Config
	st    *store
	up    *url.URL
	rt    http.RoundTripper
	rp    *httputil.ReverseProxy
	infos *apirequest.RequestInfoFactory
	log   *slog.Logger

	mu          sync.Mutex
	offline     bool
	since       time.Time     // when it went offline
	reconnected chan struct{} // closed when a server answers again
}

func newProxy(cfg Config, st *store, rt http.RoundTripper) (*proxy, error) {
	up, err := url.Parse(cfg.Upstream)
	if err != nil || up.Scheme != "https" || up.Host == "" {
		return nil, fmt.Errorf("upstream %q: want https://host:port", cfg.Upstream)
	}
	p := &proxy{
		cfg: cfg, st: st, up: up, rt: rt, log: cfg.Log, reconnected: make(chan struct{}),
		infos: &apirequest.RequestInfoFactory{APIPrefixes: sets.NewString("api", "apis"), GrouplessAPIPrefixes: sets.NewString("api")},
	}
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(up)
			pr.Out.Host = up.Host
			// Only the kubelet's certificate speaks upstream.
			for h := range pr.Out.Header {
				if strings.HasPrefix(strings.ToLower(h), "impersonate-") {
					pr.Out.Header.Del(h)
				}
			}
			if req, _ := pr.In.Context().Value(ctxKey{}).(request); req.class != passThrough {
				// JSON, which the cache reads; every client takes it.
				pr.Out.Header.Set("Accept", "application/json")
				// Uncompressed to the cache: the transport asks for gzip
				// itself and decompresses (since 1.37 the apiserver gzips
				// watch-list streams, WatchListCompression, as it does
				// large answers, when the client accepts it).
				pr.Out.Header.Del("Accept-Encoding")
			}
		},
		Transport:      rt,
		FlushInterval:  -1,
		ModifyResponse: p.record,
		ErrorHandler:   p.upstreamFailed,
		ErrorLog:       slog.NewLogLogger(cfg.Log.Handler(), slog.LevelDebug),
	}
	return p, nil
}

// ServeHTTP lets only this node's kubelet in, then forwards the request,
// or answers it from the cache while no server answers.
func (p *proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 || r.TLS.PeerCertificates[0].Subject.CommonName != "system:node:"+p.cfg.NodeName {
		writeStatus(w, http.StatusForbidden, "Forbidden", "only the kubelet of node "+p.cfg.NodeName+" may use its API cache")
		return
	}
	req, err := p.classify(r)
	if err != nil {
		writeStatus(w, http.StatusBadRequest, "BadRequest", err.Error())
		return
	}
	if p.isOffline() {
		p.serveCached(w, r, req)
		return
	}
	p.rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, req)))
}

// classify says what the cache does with r; a token request's body is
// read (and put back) for its key.
func (p *proxy) classify(r *http.Request) (request, error) {
	info, err := p.infos.NewRequestInfo(r)
	if err != nil || !info.IsResourceRequest {
		return request{}, nil
	}
	q := r.URL.Query()
	base := strings.Join([]string{info.APIPrefix, info.APIGroup, info.APIVersion, info.Namespace, info.Resource}, "/")
	switch {
	case (info.Verb == "list" || info.Verb == "watch") && info.Subresource == "":
		if q.Get("as") != "" || strings.Contains(r.Header.Get("Accept"), "as=") || q.Get("continue") != "" {
			return request{}, nil // a Table or metadata-only view, or a list's next page
		}
		req := request{class: collection, watch: info.Verb == "watch",
			key: "collection " + base + "?labelSelector=" + q.Get("labelSelector") + "&fieldSelector=" + q.Get("fieldSelector")}
		req.initial = req.watch && q.Get("sendInitialEvents") == "true"
		if s, err := strconv.Atoi(q.Get("timeoutSeconds")); err == nil && s > 0 {
			req.timeout = time.Duration(s) * time.Second
		}
		return req, nil
	case info.Verb == "get" && info.Subresource == "" && info.Name != "":
		return request{class: object, key: "object " + base + "/" + info.Name}, nil
	case info.Verb == "create" && info.Resource == "serviceaccounts" && info.Subresource == "token":
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			return request{}, fmt.Errorf("read the token request: %w", err)
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		sum := sha256.Sum256(body)
		return request{class: token, key: "token " + base + "/" + info.Name + "#" + hex.EncodeToString(sum[:])}, nil
	}
	return request{}, nil
}

// record runs on every upstream answer: a server answers, and what the
// cache keeps is stored (a watch's events as they pass).
func (p *proxy) record(resp *http.Response) error {
	p.setOnline()
	req, _ := resp.Request.Context().Value(ctxKey{}).(request)
	mediaType, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if req.class == passThrough || mediaType != "application/json" {
		return nil
	}
	if req.class == collection && req.watch {
		if resp.StatusCode == http.StatusOK {
			resp.Body = newWatchTee(resp.Body, newTap(p.st, req.key, req.initial))
			p.st.touch(req.key)
		}
		return nil
	}
	want := http.StatusOK
	if req.class == token {
		want = http.StatusCreated
	}
	if resp.StatusCode != want {
		if resp.StatusCode == http.StatusNotFound && req.class == object {
			p.st.forget(req.key)
		}
		return nil
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	resp.Body.Close()
	if err != nil {
		return err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if len(body) > maxBody {
		return nil
	}
	switch req.class {
	case collection:
		if err := p.st.putList(req.key, body); err != nil {
			p.log.Debug("not cached: the list does not parse", "key", req.key, "err", err)
		}
	case object:
		p.st.putObject(req.key, resp.StatusCode, body, time.Time{})
	case token:
		var tr authnv1.TokenRequest
		if err := json.Unmarshal(body, &tr); err == nil {
			if exp := tokenExpiry(tr); !exp.IsZero() {
				p.st.putObject(req.key, resp.StatusCode, body, exp)
			}
		}
	}
	return nil
}

// tokenExpiry is when a token stops being accepted: its JWT's exp claim,
// which is later than the answer's expirationTimestamp for the tokens the
// apiserver extends (--service-account-extend-token-expiration: the
// kubelet's 1 h tokens are valid for a year), or else that timestamp.
func tokenExpiry(tr authnv1.TokenRequest) time.Time {
	parts := strings.Split(tr.Status.Token, ".")
	if len(parts) == 3 {
		var claims struct {
			Exp int64 `json:"exp"`
		}
		if raw, err := base64.RawURLEncoding.DecodeString(parts[1]); err == nil && json.Unmarshal(raw, &claims) == nil && claims.Exp > 0 {
			return time.Unix(claims.Exp, 0)
		}
	}
	return tr.Status.ExpirationTimestamp.Time
}

// upstreamFailed runs when no server could be reached: from now on the
// kubelet is served from the cache, until a probe finds a server.
func (p *proxy) upstreamFailed(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		return // the kubelet gave up on it
	}
	req, _ := r.Context().Value(ctxKey{}).(request)
	p.setOffline(err)
	p.serveCached(w, r, req)
}

// serveCached answers r from the cache, or 503 if it holds no answer.
func (p *proxy) serveCached(w http.ResponseWriter, r *http.Request, req request) {
	e, ok := p.st.get(req.key)
	if req.class == passThrough || !ok || (req.class == collection) != e.List {
		writeStatus(w, http.StatusServiceUnavailable, "ServiceUnavailable", "no API server can be reached, and the node's API cache holds no answer to "+r.Method+" "+r.URL.Path)
		return
	}
	p.st.touch(req.key)
	switch req.class {
	case object, token:
		if !e.Expires.IsZero() && time.Until(e.Expires) < time.Minute {
			writeStatus(w, http.StatusServiceUnavailable, "ServiceUnavailable", "no API server can be reached, and the cached token has expired")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(e.Code)
		_, _ = w.Write(e.Object)
	case collection:
		if req.watch {
			p.holdWatch(w, r, req, e)
			return
		}
		body, err := e.listJSON()
		if err != nil {
			writeStatus(w, http.StatusInternalServerError, "InternalError", err.Error())
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}
}

// holdWatch answers a watch offline: the initial events if asked for, then
// nothing until a server answers again (the watch ends, and the kubelet
// watches the live API), its timeout, or the kubelet leaves.
func (p *proxy) holdWatch(w http.ResponseWriter, r *http.Request, req request, e entry) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	if req.initial {
		events, err := e.initialEvents()
		if err != nil {
			return
		}
		for _, ev := range events {
			_, _ = w.Write(append(ev, '\n'))
		}
	}
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	var timeout <-chan time.Time
	if req.timeout > 0 {
		t := time.NewTimer(req.timeout)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-r.Context().Done():
	case <-p.reconnectedChan():
	case <-timeout:
	}
}

// writeStatus answers with a metav1.Status, as the apiserver would.
func writeStatus(w http.ResponseWriter, code int, reason metav1.StatusReason, msg string) {
	body, _ := json.Marshal(metav1.Status{
		TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
		Status:   metav1.StatusFailure, Message: msg, Reason: reason, Code: int32(code),
	})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(body)
}
