package component

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
)

// Sequence starts components in order (each once the one before it is
// Ready, as a Manager does) in the background, so that a chain that needs
// nothing of the components around it (a node's container runtime needs
// no API) runs while they start. Add the Sequence where the chain may
// begin; it is Ready at once. Add its Done where what follows needs the
// chain: Done is Ready once every component of the sequence is. The
// Sequence stops its components, in reverse order, when it is stopped.
//
//	rt := component.NewSequence("node runtime", log, hostprep, containerd)
//	m.AddAlongside(rt) // with etcd
//	...
//	m.Add(rt.Done())   // before the kubelet
type Sequence struct {
	name string
	m    *Manager

	cancel   context.CancelFunc
	done     chan struct{} // closed when the components' start has ended
	startErr error         // set before done is closed
	errc     chan error
	stopOnce sync.Once
}

var _ Component = (*Sequence)(nil)
var _ Failer = (*Sequence)(nil)

// NewSequence returns a sequence of cs named name; nothing starts before Start.
func NewSequence(name string, log *slog.Logger, cs ...Component) *Sequence {
	m := NewManager(log)
	for _, c := range cs {
		m.Add(c)
	}
	return &Sequence{name: name, m: m, errc: make(chan error, 1)}
}

// Add appends c to the sequence; not after Start.
func (s *Sequence) Add(c Component) { s.m.Add(c) }

// Name implements Component.
func (s *Sequence) Name() string { return s.name }

// Start starts the components in the background and returns at once. A
// failure to start one of them, or a failure of one after it started, is
// reported on Err (and by Done's Ready).
func (s *Sequence) Start(ctx context.Context) error {
	if s.done != nil {
		return errors.New("started twice")
	}
	// The start ends at Stop, not with ctx: shutdown order stays with the
	// manager that holds the sequence.
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel, s.done = cancel, make(chan struct{})
	go func() {
		err := s.m.Start(runCtx)
		s.startErr = err
		close(s.done)
		if err != nil {
			if runCtx.Err() == nil {
				s.report(err)
			}
			return
		}
		select {
		case err := <-s.m.Err():
			s.report(err)
		case <-runCtx.Done():
		}
	}()
	return nil
}

func (s *Sequence) report(err error) {
	select {
	case s.errc <- err:
	default:
	}
}

// Ready returns at once: the components start in the background (Done
// waits for them).
func (s *Sequence) Ready(context.Context) error { return nil }

// Err yields the first failure of the sequence's components.
func (s *Sequence) Err() <-chan error { return s.errc }

// Stop ends a start still under way, then stops the started components in
// reverse order.
func (s *Sequence) Stop(ctx context.Context) error {
	if s.done == nil {
		return nil
	}
	var err error
	s.stopOnce.Do(func() {
		s.cancel()
		select {
		case <-s.done:
		case <-ctx.Done():
			err = fmt.Errorf("waiting for the start to end: %w", ctx.Err())
			return
		}
		err = s.m.Stop(ctx)
	})
	return err
}

// Done returns the component that is Ready once every component of s is.
// It starts and stops nothing.
func (s *Sequence) Done() Component { return sequenceDone{s} }

// sequenceDone is Sequence.Done.
type sequenceDone struct{ s *Sequence }

// Name is the sequence's name.
func (d sequenceDone) Name() string { return d.s.name }

// Start checks that the sequence was started.
func (d sequenceDone) Start(context.Context) error {
	if d.s.done == nil {
		return errors.New("the sequence was not started before its end")
	}
	return nil
}

// Ready waits for the sequence's components to be Ready and returns the
// error of their start, if any.
func (d sequenceDone) Ready(ctx context.Context) error {
	select {
	case <-d.s.done:
		return d.s.startErr
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Stop does nothing: the sequence stops its components.
func (sequenceDone) Stop(context.Context) error { return nil }
