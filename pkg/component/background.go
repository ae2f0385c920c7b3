package component

import (
	"context"
	"errors"
	"fmt"
)

// Background runs one blocking function (an upstream component's Run) in a
// goroutine for a component: Stop cancels its context and waits for it, and
// Err reports it returning while it should still run. Embed it to get the
// Err and Stop methods of Component and Failer.
type Background struct {
	runCtx context.Context
	cancel context.CancelFunc
	done   chan struct{}
	errc   chan error
}

// Context returns the context the run uses, creating it from parent on the
// first call. It keeps parent's values but ends only at Stop (not with
// parent), so that shutdown order stays with the manager. Use it for the
// upstream setup calls that start goroutines before Go.
func (b *Background) Context(parent context.Context) context.Context {
	if b.runCtx == nil {
		b.runCtx, b.cancel = context.WithCancel(context.WithoutCancel(parent))
	}
	return b.runCtx
}

// Go starts run in a goroutine with the Context (which must have been created).
func (b *Background) Go(run func(context.Context) error) {
	if b.errc == nil {
		b.errc = make(chan error, 1)
	}
	runCtx := b.runCtx
	b.done = make(chan struct{})
	go func() {
		defer close(b.done)
		err := run(runCtx)
		if runCtx.Err() != nil {
			return
		}
		if err == nil {
			err = errors.New("exited unexpectedly")
		}
		b.errc <- err
	}()
}

// Err yields the error of a run that returned before Stop.
func (b *Background) Err() <-chan error {
	if b.errc == nil {
		b.errc = make(chan error, 1)
	}
	return b.errc
}

// Stop cancels the run and waits for it to return, or for ctx.
func (b *Background) Stop(ctx context.Context) error {
	if b.cancel == nil {
		return nil
	}
	b.cancel()
	if b.done == nil {
		return nil
	}
	select {
	case <-b.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting for shutdown: %w", ctx.Err())
	}
}
