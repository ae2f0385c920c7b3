package leader

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"
)

func TestAfterLost(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	other := errors.New("the scheduler failed")
	never := func(context.Context) error {
		t.Fatal("checked health for an error that is not a lost lease")
		return nil
	}
	if err := afterLost(t.Context(), log, other, never, time.Millisecond); err != other {
		t.Fatalf("another error: %v", err)
	}
	if err := afterLost(t.Context(), log, nil, never, time.Millisecond); err != nil {
		t.Fatalf("nil: %v", err)
	}

	// Unhealthy, healthy, unhealthy, then healthy for good: the process
	// may end only after HealthyChecks successes in a row.
	var calls atomic.Int32
	healthy := func(context.Context) error {
		switch n := calls.Add(1); n {
		case 1, 3:
			return fmt.Errorf("check %d: etcd has no quorum", n)
		}
		return nil
	}
	lost := fmt.Errorf("kube-scheduler: %w", ErrLost)
	err := afterLost(t.Context(), log, lost, healthy, time.Millisecond)
	if !errors.Is(err, ErrLost) {
		t.Fatalf("err = %v, want ErrLost", err)
	}
	if n := calls.Load(); n != 3+HealthyChecks {
		t.Fatalf("%d checks, want %d", n, 3+HealthyChecks)
	}

	// A requested stop while waiting: no failure.
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if err := afterLost(ctx, log, lost, func(context.Context) error { return errors.New("down") }, time.Millisecond); err != nil {
		t.Fatalf("stopped while waiting: %v", err)
	}
}
