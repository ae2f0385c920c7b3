package component

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

type ctxKey struct{}

func TestBackgroundStopCancelsAndWaits(t *testing.T) {
	var b Background
	parent, cancelParent := context.WithCancel(context.WithValue(context.Background(), ctxKey{}, "v"))
	ctx := b.Context(parent)
	if b.Context(context.Background()) != ctx {
		t.Error("Context returned a new context on the second call")
	}
	var finished atomic.Bool
	started := make(chan struct{})
	b.Go(func(runCtx context.Context) error {
		if runCtx.Value(ctxKey{}) != "v" {
			t.Error("run context lost the parent's values")
		}
		close(started)
		<-runCtx.Done()
		time.Sleep(50 * time.Millisecond) // shutting down takes a while
		finished.Store(true)
		return runCtx.Err()
	})
	<-started

	// The parent ending does not end the run: only Stop does.
	cancelParent()
	time.Sleep(20 * time.Millisecond)
	if ctx.Err() != nil {
		t.Fatal("run context ended with its parent")
	}

	if err := b.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !finished.Load() {
		t.Error("Stop returned before the run did")
	}
	select {
	case err := <-b.Err():
		t.Errorf("Err() after Stop: %v", err)
	default:
	}
	if err := b.Stop(context.Background()); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

func TestBackgroundEarlyReturn(t *testing.T) {
	errRun := errors.New("listener closed")
	cases := []struct {
		name string
		ret  error
		want string
	}{
		{"run returns an error", errRun, "listener closed"},
		{"run returns nil before Stop", nil, "exited unexpectedly"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var b Background
			b.Context(context.Background())
			errc := b.Err() // taken before Go, as a manager might
			b.Go(func(context.Context) error { return tc.ret })
			select {
			case err := <-errc:
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("Err() = %v, want %q", err, tc.want)
				}
				if tc.ret != nil && !errors.Is(err, tc.ret) {
					t.Errorf("Err() = %v, want the run's error", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("no error on Err()")
			}
			if err := b.Stop(context.Background()); err != nil {
				t.Errorf("Stop after the run ended: %v", err)
			}
		})
	}
}

func TestBackgroundStopBeforeGo(t *testing.T) {
	t.Run("nothing created", func(t *testing.T) {
		var b Background
		if err := b.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-b.Err():
			t.Errorf("Err() = %v", err)
		default:
		}
	})
	t.Run("context created, Go never called", func(t *testing.T) {
		var b Background
		ctx := b.Context(context.Background())
		if err := b.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
		if ctx.Err() == nil {
			t.Error("Stop did not cancel the context handed to setup calls")
		}
	})
}

func TestBackgroundStopTimeout(t *testing.T) {
	var b Background
	b.Context(context.Background())
	release := make(chan struct{})
	b.Go(func(context.Context) error { <-release; return nil }) // ignores cancellation
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := b.Stop(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "waiting for shutdown") {
		t.Errorf("Stop = %v, want a shutdown timeout", err)
	}
	close(release)
	if err := b.Stop(context.Background()); err != nil {
		t.Errorf("Stop after the run returned: %v", err)
	}
	// A run that returns after Stop was asked for is no failure.
	select {
	case err := <-b.Err():
		t.Errorf("Err() = %v", err)
	default:
	}
}

// TestBackgroundInManager checks the embedding the components use: a
// Background-based component that dies is reported by the manager.
func TestBackgroundInManager(t *testing.T) {
	die := make(chan struct{})
	c := &bgComponent{run: func(ctx context.Context) error {
		select {
		case <-die:
			return errors.New("crashed")
		case <-ctx.Done():
			return nil
		}
	}}
	m := NewManager(discard())
	m.Add(c)
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	close(die)
	select {
	case err := <-m.Err():
		if err.Error() != "bg: crashed" {
			t.Errorf("Err() = %q, want bg: crashed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("crash not reported")
	}
	if err := m.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
}

type bgComponent struct {
	Background
	run func(context.Context) error
}

var _ Component = (*bgComponent)(nil)
var _ Failer = (*bgComponent)(nil)

func (*bgComponent) Name() string { return "bg" }
func (c *bgComponent) Start(ctx context.Context) error {
	c.Context(ctx)
	c.Go(c.run)
	return nil
}
func (*bgComponent) Ready(context.Context) error { return nil }
