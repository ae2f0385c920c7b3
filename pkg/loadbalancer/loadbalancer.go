// Package loadbalancer is the agent's client-side load balancer for the
// apiservers: a TCP proxy on loopback that every node component talks to,
// forwarding each connection to a healthy server. It prefers the server it
// used last, health-checks all of them, fails over when one stops
// answering, and learns the full list from the supervisor and from the
// kubernetes Endpoints. TLS passes through untouched (the apiserver's
// certificate names 127.0.0.1), so client certificates keep working.
//
//	lb := loadbalancer.New(loadbalancer.Config{Listen: "127.0.0.1:6444", Servers: []string{"10.0.0.1:6443"}, Log: log})
//	_ = lb.Start(ctx)
//	lb.Update([]string{"10.0.0.1:6443", "10.0.0.2:6443"})
package loadbalancer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/kedge-io/kedge/pkg/component"
)

// Config describes one load balancer.
type Config struct {
	Listen  string   // loopback address, e.g. 127.0.0.1:6444
	Servers []string // host:port of the apiservers known at start
	// HealthInterval is how often every server is dialed; default 2 s (with
	// the 2 s dial timeout, a server cut off loses its connections within 4 s).
	HealthInterval time.Duration
	// Kubeconfig, if set, is a client (through this balancer) allowed to
	// get the default/kubernetes Endpoints, from which the server list is
	// learnt every EndpointsInterval (default 30 s).
	Kubeconfig        string
	EndpointsInterval time.Duration
	Log               *slog.Logger
}

// LoadBalancer is the component.
type LoadBalancer struct {
	cfg      Config
	listener net.Listener
	cancel   context.CancelFunc
	wg       sync.WaitGroup

	mu        sync.Mutex
	servers   []string            // in preference order
	unhealthy map[string]bool     // failed its last health check or dial
	current   string              // where the last connection went
	conns     map[net.Conn]string // open connections (client and backend ends) → their server
}

var _ component.Component = (*LoadBalancer)(nil)

// New returns a load balancer; nothing listens until Start.
func New(cfg Config) *LoadBalancer {
	if cfg.HealthInterval == 0 {
		cfg.HealthInterval = 2 * time.Second
	}
	if cfg.EndpointsInterval == 0 {
		cfg.EndpointsInterval = 30 * time.Second
	}
	return &LoadBalancer{cfg: cfg, servers: slices.Clone(cfg.Servers), unhealthy: map[string]bool{}, conns: map[net.Conn]string{}}
}

// Name implements component.Component.
func (*LoadBalancer) Name() string { return "apiserver-loadbalancer" }

// Address is the URL node components use for the apiserver.
func (lb *LoadBalancer) Address() string { return "https://" + lb.cfg.Listen }

// Start listens and serves in the background.
func (lb *LoadBalancer) Start(ctx context.Context) error {
	l, err := net.Listen("tcp", lb.cfg.Listen)
	if err != nil {
		return fmt.Errorf("apiserver load balancer: %w", err)
	}
	lb.listener = l
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	lb.cancel = cancel
	lb.wg.Add(2)
	go func() { defer lb.wg.Done(); lb.serve(runCtx) }()
	go func() { defer lb.wg.Done(); lb.healthLoop(runCtx) }()
	if lb.cfg.Kubeconfig != "" {
		lb.wg.Add(1)
		go func() { defer lb.wg.Done(); lb.watchEndpoints(runCtx) }()
	}
	return nil
}

// Ready returns once listening; Start already did that.
func (*LoadBalancer) Ready(context.Context) error { return nil }

// Stop closes the listener and every proxied connection.
func (lb *LoadBalancer) Stop(context.Context) error {
	if lb.cancel == nil {
		return nil
	}
	lb.cancel()
	lb.listener.Close()
	lb.mu.Lock()
	for c := range lb.conns {
		c.Close()
	}
	lb.mu.Unlock()
	lb.wg.Wait()
	return nil
}

// Update replaces the list of servers, keeping the current one first if it
// is still listed.
func (lb *LoadBalancer) Update(servers []string) {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	next := slices.Clone(servers)
	slices.Sort(next)
	next = slices.Compact(next)
	if i := slices.Index(next, lb.current); i > 0 {
		next[0], next[i] = next[i], next[0]
	}
	if !slices.Equal(next, lb.servers) {
		lb.cfg.Log.Info("apiserver load balancer servers", "component", "loadbalancer", "servers", next)
	}
	lb.servers = next
}

// Servers returns the servers in preference order.
func (lb *LoadBalancer) Servers() []string {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	return slices.Clone(lb.servers)
}

// candidates lists the servers to try for a new connection: the current
// one, then the healthy ones, then the rest.
func (lb *LoadBalancer) candidates() []string {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	var healthy, sick []string
	for _, s := range lb.servers {
		switch {
		case s == lb.current && !lb.unhealthy[s]:
			healthy = append([]string{s}, healthy...)
		case lb.unhealthy[s]:
			sick = append(sick, s)
		default:
			healthy = append(healthy, s)
		}
	}
	return append(healthy, sick...)
}

func (lb *LoadBalancer) serve(ctx context.Context) {
	for {
		conn, err := lb.listener.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		lb.wg.Add(1)
		go func() { defer lb.wg.Done(); lb.proxy(ctx, conn) }()
	}
}

// proxy connects client to the first server that answers.
func (lb *LoadBalancer) proxy(ctx context.Context, client net.Conn) {
	defer client.Close()
	var backend net.Conn
	var server string
	for _, s := range lb.candidates() {
		d := net.Dialer{Timeout: 3 * time.Second}
		c, err := d.DialContext(ctx, "tcp", s)
		if err != nil {
			lb.mark(s, false)
			continue
		}
		lb.mark(s, true)
		lb.mu.Lock()
		if lb.current != s {
			lb.cfg.Log.Info("apiserver load balancer now uses", "component", "loadbalancer", "server", s)
		}
		lb.current = s
		lb.mu.Unlock()
		backend, server = c, s
		break
	}
	if backend == nil {
		return
	}
	defer backend.Close()
	lb.track(client, server)
	lb.track(backend, server)
	defer lb.track(client, "")
	defer lb.track(backend, "")
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(backend, client); closeWrite(backend); done <- struct{}{} }()
	go func() { _, _ = io.Copy(client, backend); closeWrite(client); done <- struct{}{} }()
	<-done
	<-done
}

func closeWrite(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
}

// track records c as a connection to server; "" forgets it.
func (lb *LoadBalancer) track(c net.Conn, server string) {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	if server != "" {
		lb.conns[c] = server
	} else {
		delete(lb.conns, c)
	}
}

func (lb *LoadBalancer) mark(server string, healthy bool) {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	if lb.unhealthy[server] == !healthy {
		return
	}
	lb.unhealthy[server] = !healthy
	lb.cfg.Log.Info("apiserver health changed", "component", "loadbalancer", "server", server, "healthy", healthy)
	if healthy {
		return
	}
	if lb.current == server {
		lb.current = ""
	}
	// A server that went away takes its connections with it, so that
	// clients reconnect (through us) to a healthy one instead of hanging
	// until a partition heals or their own health checks give up.
	closed := 0
	for c, s := range lb.conns {
		if s == server {
			c.Close()
			closed++
		}
	}
	if closed > 0 {
		lb.cfg.Log.Info("closed the connections to an unhealthy apiserver", "component", "loadbalancer", "server", server, "connections", closed/2)
	}
}

// healthLoop dials every server periodically.
func (lb *LoadBalancer) healthLoop(ctx context.Context) {
	for {
		for _, s := range lb.Servers() {
			d := net.Dialer{Timeout: 2 * time.Second}
			c, err := d.DialContext(ctx, "tcp", s)
			if err == nil {
				c.Close()
			}
			if ctx.Err() != nil {
				return
			}
			lb.mark(s, err == nil)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(lb.cfg.HealthInterval):
		}
	}
}
