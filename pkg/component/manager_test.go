package component

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// recorder collects what the fake components did, in order.
type recorder struct {
	mu     sync.Mutex
	events []string
}

func (r *recorder) add(e string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *recorder) get() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.events...)
}

// fake is a test double of a component; it records its calls.
type fake struct {
	name                        string
	rec                         *recorder
	startErr, readyErr, stopErr error
	// readyWait, if set, makes Ready block until it is closed or ctx is done.
	readyWait chan struct{}
}

func (f *fake) Name() string { return f.name }

func (f *fake) Start(context.Context) error {
	if f.startErr != nil {
		f.rec.add("start " + f.name + " failed")
		return f.startErr
	}
	f.rec.add("start " + f.name)
	return nil
}

func (f *fake) Ready(ctx context.Context) error {
	if f.readyWait != nil {
		select {
		case <-f.readyWait:
		case <-ctx.Done():
			f.rec.add("ready " + f.name + " cancelled")
			return ctx.Err()
		}
	}
	if f.readyErr != nil {
		f.rec.add("ready " + f.name + " failed")
		return f.readyErr
	}
	f.rec.add("ready " + f.name)
	return nil
}

func (f *fake) Stop(context.Context) error {
	f.rec.add("stop " + f.name)
	return f.stopErr
}

// failer is a fake that can fail after it started.
type failer struct {
	*fake
	errc chan error
}

func (f *failer) Err() <-chan error { return f.errc }

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

var (
	errStart = errors.New("boom at start")
	errReady = errors.New("never ready")
	errStopA = errors.New("a would not stop")
	errStopC = errors.New("c would not stop")
)

func TestManagerStartStop(t *testing.T) {
	cases := []struct {
		name string
		// set adjusts the three fakes a, b, c (added in that order).
		set        func(a, b, c *fake)
		wantStart  []string // events of Start
		wantErr    []error  // errors.Is targets of Start's error
		wantErrMsg []string
		wantStop   []string // events of the Stop that follows
		wantStopIs []error
	}{
		{
			name:      "starts in order, each Ready before the next Start; stops in reverse",
			set:       func(a, b, c *fake) {},
			wantStart: []string{"start a", "ready a", "start b", "ready b", "start c", "ready c"},
			wantStop:  []string{"stop c", "stop b", "stop a"},
		},
		{
			name:       "a failed Start stops only what started, in reverse",
			set:        func(a, b, c *fake) { c.startErr = errStart },
			wantStart:  []string{"start a", "ready a", "start b", "ready b", "start c failed", "stop b", "stop a"},
			wantErr:    []error{errStart},
			wantErrMsg: []string{"c: start: boom at start"},
			wantStop:   nil, // nothing left to stop
		},
		{
			name:       "a failed first Start stops nothing",
			set:        func(a, b, c *fake) { a.startErr = errStart },
			wantStart:  []string{"start a failed"},
			wantErr:    []error{errStart},
			wantErrMsg: []string{"a: start:"},
		},
		{
			name:       "a failed Ready stops that component too",
			set:        func(a, b, c *fake) { b.readyErr = errReady },
			wantStart:  []string{"start a", "ready a", "start b", "ready b failed", "stop b", "stop a"},
			wantErr:    []error{errReady},
			wantErrMsg: []string{"b: not ready: never ready"},
		},
		{
			name:       "stop errors after a failed Start are joined to it",
			set:        func(a, b, c *fake) { c.startErr = errStart; a.stopErr = errStopA },
			wantStart:  []string{"start a", "ready a", "start b", "ready b", "start c failed", "stop b", "stop a"},
			wantErr:    []error{errStart, errStopA},
			wantErrMsg: []string{"c: start:", "a: stop: a would not stop"},
		},
		{
			name:       "Stop goes on after an error and joins all of them",
			set:        func(a, b, c *fake) { a.stopErr = errStopA; c.stopErr = errStopC },
			wantStart:  []string{"start a", "ready a", "start b", "ready b", "start c", "ready c"},
			wantStop:   []string{"stop c", "stop b", "stop a"},
			wantStopIs: []error{errStopA, errStopC},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			a, b, c := &fake{name: "a", rec: rec}, &fake{name: "b", rec: rec}, &fake{name: "c", rec: rec}
			tc.set(a, b, c)
			m := NewManager(discard())
			m.Add(a)
			m.Add(b)
			m.Add(c)

			err := m.Start(context.Background())
			if got := rec.get(); !reflect.DeepEqual(got, tc.wantStart) {
				t.Errorf("Start did %q, want %q", got, tc.wantStart)
			}
			checkErr(t, "Start", err, tc.wantErr, tc.wantErrMsg)

			n := len(rec.get())
			err = m.Stop(context.Background())
			if got := rec.get()[n:]; !reflect.DeepEqual(got, tc.wantStop) && len(got)+len(tc.wantStop) > 0 {
				t.Errorf("Stop did %q, want %q", got, tc.wantStop)
			}
			checkErr(t, "Stop", err, tc.wantStopIs, nil)

			// A second Stop is safe and stops nothing again.
			n = len(rec.get())
			if err := m.Stop(context.Background()); err != nil {
				t.Errorf("second Stop: %v", err)
			}
			if got := rec.get()[n:]; len(got) > 0 {
				t.Errorf("second Stop did %q", got)
			}
		})
	}
}

func checkErr(t *testing.T, what string, err error, is []error, msgs []string) {
	t.Helper()
	if len(is) == 0 && len(msgs) == 0 {
		if err != nil {
			t.Errorf("%s: unexpected error %v", what, err)
		}
		return
	}
	if err == nil {
		t.Fatalf("%s: no error, want %v", what, is)
	}
	for _, target := range is {
		if !errors.Is(err, target) {
			t.Errorf("%s: error %q is not %q", what, err, target)
		}
	}
	for _, m := range msgs {
		if !strings.Contains(err.Error(), m) {
			t.Errorf("%s: error %q does not contain %q", what, err, m)
		}
	}
}

func TestManagerWaitsForReady(t *testing.T) {
	rec := &recorder{}
	release := make(chan struct{})
	a := &fake{name: "a", rec: rec, readyWait: release}
	b := &fake{name: "b", rec: rec}
	m := NewManager(discard())
	m.Add(a)
	m.Add(b)
	done := make(chan error, 1)
	go func() { done <- m.Start(context.Background()) }()

	time.Sleep(100 * time.Millisecond)
	if got := rec.get(); !reflect.DeepEqual(got, []string{"start a"}) {
		t.Errorf("while a is not ready: %q, want only a started", got)
	}
	select {
	case err := <-done:
		t.Fatalf("Start returned before a was ready: %v", err)
	default:
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got, want := rec.get(), []string{"start a", "ready a", "start b", "ready b"}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	if err := m.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// A component added alongside starts while the one before it is not Ready
// yet; the next stage waits for both; a failed Ready of the alongside one
// stops both, in reverse order.
func TestManagerAddAlongside(t *testing.T) {
	rec := &recorder{}
	release := make(chan struct{})
	a := &fake{name: "a", rec: rec, readyWait: release}
	b := &fake{name: "b", rec: rec}
	c := &fake{name: "c", rec: rec}
	m := NewManager(discard())
	m.Add(a)
	m.AddAlongside(b)
	m.Add(c)
	done := make(chan error, 1)
	go func() { done <- m.Start(context.Background()) }()

	time.Sleep(100 * time.Millisecond)
	if got, want := rec.get(), []string{"start a", "start b"}; !reflect.DeepEqual(got, want) {
		t.Errorf("while a is not ready: %q, want %q", got, want)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got, want := rec.get(), []string{"start a", "start b", "ready a", "ready b", "start c", "ready c"}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	if err := m.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}

	rec = &recorder{}
	a = &fake{name: "a", rec: rec}
	b = &fake{name: "b", rec: rec, readyErr: errors.New("boom")}
	c = &fake{name: "c", rec: rec}
	m = NewManager(discard())
	m.Add(a)
	m.AddAlongside(b)
	m.Add(c)
	err := m.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "b: not ready: boom") {
		t.Fatalf("Start = %v, want b's Ready error", err)
	}
	if got, want := rec.get(), []string{"start a", "start b", "ready a", "ready b failed", "stop b", "stop a"}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestManagerStartContextCancelled(t *testing.T) {
	rec := &recorder{}
	a := &fake{name: "a", rec: rec, readyWait: make(chan struct{})} // never ready
	m := NewManager(discard())
	m.Add(a)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := m.Start(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "a: not ready") {
		t.Errorf("Start = %v, want a: not ready with the deadline", err)
	}
	if got, want := rec.get(), []string{"start a", "ready a cancelled", "stop a"}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestManagerErrAfterStart(t *testing.T) {
	rec := &recorder{}
	errDied := errors.New("died")
	a := &failer{fake: &fake{name: "a", rec: rec}, errc: make(chan error, 1)}
	b := &fake{name: "b", rec: rec}
	m := NewManager(discard())
	m.Add(a)
	m.Add(b)
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-m.Err():
		t.Fatalf("Err before any failure: %v", err)
	default:
	}
	a.errc <- errDied
	select {
	case err := <-m.Err():
		if !errors.Is(err, errDied) || !strings.HasPrefix(err.Error(), "a: ") {
			t.Errorf("Err() = %q, want a: died", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the failure was not reported on Err()")
	}
	if err := m.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestManagerFailureWhileWaitingForReady(t *testing.T) {
	rec := &recorder{}
	errDied := errors.New("died")
	a := &failer{fake: &fake{name: "a", rec: rec}, errc: make(chan error, 1)}
	b := &fake{name: "b", rec: rec, readyWait: make(chan struct{})} // would wait forever
	c := &fake{name: "c", rec: rec}
	m := NewManager(discard())
	m.Add(a)
	m.Add(b)
	m.Add(c)
	done := make(chan error, 1)
	go func() { done <- m.Start(context.Background()) }()
	waitFor(t, rec, "start b")
	a.errc <- errDied

	var err error
	select {
	case err = <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Start still waits for b after a failed")
	}
	if !errors.Is(err, errDied) || !strings.Contains(err.Error(), "b: not ready") || !strings.Contains(err.Error(), "a: died") {
		t.Errorf("Start = %q, want b not ready because a died", err)
	}
	if got, want := rec.get(), []string{"start a", "ready a", "start b", "ready b cancelled", "stop b", "stop a"}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	// The failure is still reported on Err().
	select {
	case err := <-m.Err():
		if !errors.Is(err, errDied) {
			t.Errorf("Err() = %v", err)
		}
	default:
		t.Error("Err() lost the failure")
	}
}

func TestManagerNilErrChannel(t *testing.T) {
	rec := &recorder{}
	a := &failer{fake: &fake{name: "a", rec: rec}} // Err() returns a nil channel
	m := NewManager(discard())
	m.Add(a)
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := m.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestManagerEmpty(t *testing.T) {
	m := NewManager(discard())
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := m.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// waitFor waits until rec holds event.
func waitFor(t *testing.T, rec *recorder, event string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for _, e := range rec.get() {
			if e == event {
				return
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no %q in %q", event, rec.get())
}

// TestManagerRun: Run returns after a requested stop with nil, after a
// failure with it (and the stop errors), having stopped everything in
// reverse order both times.
func TestManagerRun(t *testing.T) {
	t.Run("requested stop", func(t *testing.T) {
		rec := &recorder{}
		m := NewManager(discard())
		m.Add(&fake{name: "a", rec: rec})
		m.Add(&fake{name: "b", rec: rec})
		ctx, cancel := context.WithCancel(context.Background())
		if err := m.Start(ctx); err != nil {
			t.Fatal(err)
		}
		cancel()
		if err := m.Run(ctx); err != nil {
			t.Fatalf("Run = %v, want nil", err)
		}
		if got, want := strings.Join(rec.get(), ","), "start a,ready a,start b,ready b,stop b,stop a"; got != want {
			t.Errorf("events %s, want %s", got, want)
		}
	})
	t.Run("failure", func(t *testing.T) {
		rec := &recorder{}
		errDied := errors.New("died")
		a := &failer{fake: &fake{name: "a", rec: rec, stopErr: errStopA}, errc: make(chan error, 1)}
		m := NewManager(discard())
		m.Add(a)
		m.Add(&fake{name: "b", rec: rec})
		if err := m.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		a.errc <- errDied
		err := m.Run(context.Background())
		if !errors.Is(err, errDied) || !errors.Is(err, errStopA) {
			t.Fatalf("Run = %v, want the failure and a's stop error", err)
		}
		if got, want := strings.Join(rec.get(), ","), "start a,ready a,start b,ready b,stop b,stop a"; got != want {
			t.Errorf("events %s, want %s", got, want)
		}
	})
}
