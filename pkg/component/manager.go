package component

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"sync"
	"time"
)

// Manager starts components in the order they were added and stops them in
// reverse. Each waits for the one before it to be Ready, unless it was added
// with AddAlongside. It is not safe to Add after Start.
type Manager struct {
	// StopTimeout bounds the stop of what started when Start fails, and
	// the stop at the end of Run.
	StopTimeout time.Duration

	log *slog.Logger
	// stages in start order: a component added with Add opens a stage,
	// AddAlongside joins the last one.
	stages  [][]Component
	started []Component

	failOnce sync.Once
	failed   chan error
}

// DefaultStopTimeout bounds a stop: under the 10 s a service manager (and
// kedge's tests) give a process after SIGTERM.
const DefaultStopTimeout = 9 * time.Second

// NewManager returns an empty manager that logs through log.
func NewManager(log *slog.Logger) *Manager {
	return &Manager{log: log, failed: make(chan error, 1), StopTimeout: DefaultStopTimeout}
}

// Add appends c to the start order: c starts once the component before it
// is Ready.
// quickReady is how fast a component must be ready for its "component
// ready" line to be a debug one.
const quickReady = 5 * time.Millisecond

func (m *Manager) Add(c Component) { m.stages = append(m.stages, []Component{c}) }

// AddAlongside appends c to the start order, to start as soon as the
// component before it has started, while that one becomes Ready: for a
// component that waits for its dependency by itself (the apiserver retries
// etcd), so that its own set-up overlaps the dependency's. Both are Ready
// before any later component starts.
func (m *Manager) AddAlongside(c Component) {
	if len(m.stages) == 0 {
		m.Add(c)
		return
	}
	last := len(m.stages) - 1
	m.stages[last] = append(m.stages[last], c)
}

// Start starts the components in order, each once the one before it is
// Ready (or, added with AddAlongside, once it has started). On failure it
// stops what it started (within StopTimeout) and returns the error.
func (m *Manager) Start(ctx context.Context) error {
	for _, stage := range m.stages {
		begins := make([]time.Time, len(stage))
		for k, c := range stage {
			begins[k] = time.Now()
			if err := c.Start(ctx); err != nil {
				err = fmt.Errorf("%s: start: %w", c.Name(), err)
				return errors.Join(err, m.stopAfterFailure(ctx))
			}
			m.started = append(m.started, c)
			m.watch(c)
		}
		for k, c := range stage {
			waited := time.Now()
			if err := m.waitReady(ctx, c); err != nil {
				err = fmt.Errorf("%s: not ready: %w", c.Name(), err)
				return errors.Join(err, m.stopAfterFailure(ctx))
			}
			// A component ready at once (one that works in the background,
			// or one alongside that was ready while the stage's first one
			// was not) says nothing about the start-up's timing: debug level.
			level, took := slog.LevelInfo, time.Since(begins[k])
			if took < quickReady || (k > 0 && time.Since(waited) < quickReady) {
				level = slog.LevelDebug
			}
			m.log.Log(ctx, level, "component ready", "component", c.Name(), "took", took.Round(time.Millisecond))
		}
	}
	return nil
}

func (m *Manager) stopAfterFailure(ctx context.Context) error {
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.StopTimeout)
	defer cancel()
	return m.Stop(stopCtx)
}

// waitReady waits for c.Ready, but returns early if a started component
// fails meanwhile: a component that dies while another waits would otherwise
// leave Start blocked until ctx is done.
func (m *Manager) waitReady(ctx context.Context, c Component) error {
	readyCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- c.Ready(readyCtx) }()
	select {
	case err := <-done:
		return err
	case err := <-m.failed:
		// Put it back so that Err() still reports it.
		m.fail(err)
		cancel()
		<-done
		return err
	}
}

// watch forwards the first failure of c to the manager's Err channel.
func (m *Manager) watch(c Component) {
	f, ok := c.(Failer)
	if !ok {
		return
	}
	ch := f.Err()
	if ch == nil || reflect.ValueOf(ch).IsNil() {
		return
	}
	go func() {
		if err, ok := <-ch; ok && err != nil {
			m.fail(fmt.Errorf("%s: %w", c.Name(), err))
		}
	}()
}

func (m *Manager) fail(err error) {
	select {
	case m.failed <- err:
	default:
	}
}

// Run waits, after a successful Start, until ctx is done or a component
// fails, then stops everything within StopTimeout. It returns the failure
// joined with the errors of the stop; nil after a requested, clean stop.
func (m *Manager) Run(ctx context.Context) error {
	var runErr error
	select {
	case <-ctx.Done():
		m.log.Info("shutting down", "reason", context.Cause(ctx))
	case runErr = <-m.failed:
		m.log.Error("component failed, shutting down", "err", runErr)
	}
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.StopTimeout)
	defer cancel()
	return errors.Join(runErr, m.Stop(stopCtx))
}

// Err yields the first error of any started component that failed after it
// started. The caller should then Stop the manager.
func (m *Manager) Err() <-chan error { return m.failed }

// Stop stops every started component in reverse start order and joins their
// errors. It is safe to call more than once.
func (m *Manager) Stop(ctx context.Context) error {
	var errs []error
	for i := len(m.started) - 1; i >= 0; i-- {
		c := m.started[i]
		begin := time.Now()
		if err := c.Stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("%s: stop: %w", c.Name(), err))
			m.log.Error("component stop failed", "component", c.Name(), "err", err)
			continue
		}
		m.log.Info("component stopped", "component", c.Name(), "took", time.Since(begin).Round(time.Millisecond))
	}
	m.started = nil
	return errors.Join(errs...)
}
