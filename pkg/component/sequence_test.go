package component

import (
	"context"
	"errors"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"
)

// A sequence added alongside a slow component runs meanwhile; its Done
// holds back what follows until the sequence is Ready; it stops after
// everything that started after it.
func TestSequenceRunsAlongside(t *testing.T) {
	rec := &recorder{}
	slowReady := make(chan struct{})
	slow := &fake{name: "slow", rec: rec, readyWait: slowReady}
	x, y := &fake{name: "x", rec: rec}, &fake{name: "y", rec: rec}
	after := &fake{name: "after", rec: rec}
	seq := NewSequence("seq", discard(), x, y)
	m := NewManager(discard())
	m.Add(slow)
	m.AddAlongside(seq)
	m.Add(seq.Done())
	m.Add(after)

	errc := make(chan error, 1)
	go func() { errc <- m.Start(context.Background()) }()
	// y is Ready while slow is not: the sequence did not wait for it.
	waitEvent(t, rec, "ready y")
	if got := rec.get(); contains(got, "ready slow") || contains(got, "start after") {
		t.Fatalf("events %q: the sequence waited for slow, or after started early", got)
	}
	close(slowReady)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	n := len(rec.get())
	if err := m.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, want := rec.get()[n:], []string{"stop after", "stop y", "stop x", "stop slow"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Stop did %q, want %q", got, want)
	}
}

// A component of the sequence that fails to start fails the manager's
// Start, even while another stage still waits, and is named in the error.
func TestSequenceStartFailure(t *testing.T) {
	rec := &recorder{}
	never := &fake{name: "never", rec: rec, readyWait: make(chan struct{})}
	x, y := &fake{name: "x", rec: rec}, &fake{name: "y", rec: rec, startErr: errStart}
	seq := NewSequence("seq", discard(), x, y)
	m := NewManager(discard())
	m.Add(never)
	m.AddAlongside(seq)
	m.Add(seq.Done())

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := m.Start(ctx)
	if !errors.Is(err, errStart) || !strings.Contains(err.Error(), "seq: y: start: boom at start") {
		t.Fatalf("Start: %v, want the sequence's y failure", err)
	}
	if ctx.Err() != nil {
		t.Fatal("Start waited for the stage instead of failing at once")
	}
	// The sequence stopped what it started; the manager stopped never.
	if got := rec.get(); !contains(got, "stop x") || !contains(got, "stop never") {
		t.Errorf("events %q: want x and never stopped", got)
	}
}

// A component of the sequence that fails after it started is reported on
// the sequence's Err.
func TestSequenceFailsLater(t *testing.T) {
	rec := &recorder{}
	f := &failer{fake: &fake{name: "f", rec: rec}, errc: make(chan error, 1)}
	seq := NewSequence("seq", discard(), f)
	if err := seq.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := seq.Done().Ready(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.errc <- errors.New("died")
	select {
	case err := <-seq.Err():
		if !strings.Contains(err.Error(), "f: died") {
			t.Errorf("Err: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no error on Err")
	}
	if err := seq.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// Stop during the sequence's start ends it and stops what had started.
func TestSequenceStopDuringStart(t *testing.T) {
	rec := &recorder{}
	x := &fake{name: "x", rec: rec}
	blocked := &fake{name: "blocked", rec: rec, readyWait: make(chan struct{})}
	seq := NewSequence("seq", discard(), x, blocked)
	if err := seq.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, rec, "start blocked")
	if err := seq.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := rec.get(); !contains(got, "stop blocked") || !contains(got, "stop x") {
		t.Errorf("events %q: want blocked and x stopped", got)
	}
	select {
	case err := <-seq.Err():
		t.Errorf("a requested stop reported %v", err)
	default:
	}
}

func contains(events []string, e string) bool {
	for _, got := range events {
		if got == e {
			return true
		}
	}
	return false
}

func waitEvent(t *testing.T, rec *recorder, e string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !contains(rec.get(), e) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in %q", e, rec.get())
		}
		time.Sleep(time.Millisecond)
	}
}

// A component alongside that is Ready while the stage's first one is not
// gets a debug line, not an info line repeating the first one's time.
func TestReadyAlongsideLogsAtDebug(t *testing.T) {
	var buf strings.Builder
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	rec := &recorder{}
	slowReady := make(chan struct{})
	m := NewManager(log)
	m.Add(&fake{name: "slow", rec: rec, readyWait: slowReady})
	m.AddAlongside(&fake{name: "quick", rec: rec})
	go func() { time.Sleep(20 * time.Millisecond); close(slowReady) }()
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if !strings.Contains(out, `level=INFO msg="component ready" component=slow`) ||
		!strings.Contains(out, `level=DEBUG msg="component ready" component=quick`) {
		t.Errorf("log:\n%s\nwant slow at INFO, quick at DEBUG", out)
	}
}
