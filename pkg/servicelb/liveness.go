package servicelb

import (
	"context"
	"net"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// ProbePort is the port a node's liveness is probed at: the kubelet's,
// which kedge serves in the same process.
const ProbePort = 10250

// Probing: every ProbeEvery; a node is down after ProbeFailures failures
// in a row, so a node takes over about ProbeEvery×ProbeFailures after the
// announcing node dies.
const (
	ProbeEvery    = time.Second
	ProbeFailures = 3
)

// alive reports whether node n answered its last probes; a node not probed
// yet counts as alive until its probe says otherwise.
func (e *election) alive(name string, n *corev1.Node) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	p := e.probes[name]
	if p == nil {
		return true
	}
	return p.alive()
}

// keepProbes runs a probe for every node in want and stops the others.
func (e *election) keepProbes(want map[string]bool, eligible map[string]*corev1.Node) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for name, p := range e.probes {
		if !want[name] {
			p.stop()
			delete(e.probes, name)
		}
	}
	for name := range want {
		if _, ok := e.probes[name]; ok {
			continue
		}
		if addr := internalIP(eligible[name]); addr != "" {
			e.probes[name] = startProbe(net.JoinHostPort(addr, strconv.Itoa(ProbePort)), e.poke)
		}
	}
}

func (e *election) stopProbes() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for name, p := range e.probes {
		p.stop()
		delete(e.probes, name)
	}
}

func internalIP(n *corev1.Node) string {
	if n == nil {
		return ""
	}
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			return a.Address
		}
	}
	return ""
}

// probe connects to a node's kubelet port every ProbeEvery.
type probe struct {
	mu       sync.Mutex
	failures int
	cancel   context.CancelFunc
}

func startProbe(addr string, changed func()) *probe {
	ctx, cancel := context.WithCancel(context.Background())
	p := &probe{cancel: cancel}
	go func() {
		tick := time.NewTicker(ProbeEvery)
		defer tick.Stop()
		for {
			d := net.Dialer{Timeout: ProbeEvery}
			conn, err := d.DialContext(ctx, "tcp", addr)
			if err == nil {
				conn.Close()
			}
			p.mu.Lock()
			was := p.failures < ProbeFailures
			if err == nil {
				p.failures = 0
			} else {
				p.failures++
			}
			now := p.failures < ProbeFailures
			p.mu.Unlock()
			if was != now {
				changed()
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return p
}

func (p *probe) alive() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.failures < ProbeFailures
}

func (p *probe) stop() { p.cancel() }
