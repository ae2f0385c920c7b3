package apicache

import (
	"context"
	"io"
	"net/http"
	"time"
)

func (p *proxy) isOffline() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.offline
}

func (p *proxy) reconnectedChan() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.reconnected
}

func (p *proxy) setOffline(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.offline {
		return
	}
	p.offline, p.since = true, time.Now()
	p.log.Warn("no API server answers: the kubelet is served from the node's API cache until one does", "err", err, "cached", p.st.len())
}

func (p *proxy) setOnline() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.offline {
		return
	}
	p.offline = false
	close(p.reconnected) // the held watches end: the kubelet watches the live API
	p.reconnected = make(chan struct{})
	p.log.Info("an API server answers again: the kubelet uses the live API", "offline_for", time.Since(p.since).Round(time.Millisecond))
}

// closeHeld ends every watch held open.
func (p *proxy) closeHeld() {
	p.mu.Lock()
	defer p.mu.Unlock()
	close(p.reconnected)
	p.reconnected = make(chan struct{})
}

// probeLoop asks, while offline, whether a server is ready again.
func (p *proxy) probeLoop(ctx context.Context) {
	client := &http.Client{Transport: p.rt, Timeout: 3 * time.Second}
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(p.cfg.ProbeInterval):
		}
		if !p.isOffline() {
			continue
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.up.JoinPath("/readyz").String(), nil)
		if resp, err := client.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				p.setOnline()
			}
		}
	}
}

// flushLoop writes the cache once a second, pruning it while online.
func (p *proxy) flushLoop(ctx context.Context) {
	var lastErr string
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
		prune := p.cfg.PruneAfter
		if p.isOffline() {
			prune = 0
		}
		if err := p.st.flush(prune); err != nil && err.Error() != lastErr {
			p.log.Warn("cannot write the node's API cache", "err", err)
			lastErr = err.Error()
		} else if err == nil {
			lastErr = ""
		}
	}
}
