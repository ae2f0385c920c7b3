package etcdsnapshot

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestParseCron(t *testing.T) {
	s, err := ParseCron(DefaultCron)
	if err != nil {
		t.Fatal(err)
	}
	from := time.Date(2026, 12, 1, 5, 30, 0, 0, time.Local)
	next := s.Next(from)
	if want := time.Date(2026, 12, 1, 12, 0, 0, 0, time.Local); !next.Equal(want) {
		t.Errorf("next after %s: %s, want %s", from, next, want)
	}
	if after := s.Next(next); !after.Equal(time.Date(2026, 12, 2, 0, 0, 0, 0, time.Local)) {
		t.Errorf("then %s", after)
	}
	for _, ok := range []string{"*/5 * * * *", "@daily", "@every 1h", "0 3 * * 1-5"} {
		if _, err := ParseCron(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "0 */12 * *", "61 * * * *", "every day", "0 0 0 * * *"} {
		_, err := ParseCron(bad)
		if err == nil || !strings.Contains(err.Error(), "--etcd-snapshot-schedule-cron") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

// TestScheduler: the component takes a snapshot at each time of a real
// cron schedule (@every 1s) and keeps the newest Retention of them.
func TestScheduler(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real etcd member")
	}
	m := newMember(t, "s1")
	m.put(t, 10)
	sched, err := ParseCron("@every 1s")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir() + "/snapshots"
	sealed := 0
	s := NewScheduler(SchedulerConfig{
		Schedule: sched, Spec: "@every 1s", Retention: 2, Dir: dir, Node: "s1",
		Etcd:      func() (*clientv3.Client, error) { return m.client, nil },
		Bootstrap: func() ([]byte, error) { sealed++; return []byte("sealed"), nil },
		Log:       slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(4500 * time.Millisecond)
	if err := s.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	list, err := List(dir, "s1")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || sealed < 3 {
		t.Fatalf("after ~4 runs with retention 2: %d snapshots (%s), %d seals", len(list), names(list), sealed)
	}
	for _, in := range list {
		if in.Prefix != ScheduledPrefix || in.Node != "s1" || in.Compressed {
			t.Errorf("%+v", in)
		}
	}
	resp, err := m.client.Get(context.Background(), BootstrapKey)
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "sealed" {
		t.Errorf("bootstrap key: %v %v", resp, err)
	}
	if err := NewScheduler(SchedulerConfig{Schedule: sched, Retention: 0, Dir: dir, Log: slog.Default()}).Start(context.Background()); err == nil || !strings.Contains(err.Error(), "--etcd-snapshot-retention") {
		t.Errorf("retention 0: %v", err)
	}
}
