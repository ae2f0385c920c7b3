package etcdsnapshot

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/robfig/cron/v3"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kedge-io/kedge/pkg/component"
)

// Defaults of the schedule flags.
const (
	DefaultCron      = "0 */12 * * *"
	DefaultRetention = 5
)

// snapshotTimeout bounds one scheduled snapshot.
const snapshotTimeout = 10 * time.Minute

// Schedule is when snapshots are taken: a parsed cron expression.
type Schedule interface {
	Next(time.Time) time.Time
}

// ParseCron parses a standard five-field cron expression (minute hour
// day-of-month month day-of-week; also @every 1h, @daily, ...).
func ParseCron(spec string) (Schedule, error) {
	s, err := cron.ParseStandard(spec)
	if err != nil {
		return nil, fmt.Errorf("--etcd-snapshot-schedule-cron %q: %w (want five fields: minute hour day-of-month month day-of-week, e.g. %q)", spec, err, DefaultCron)
	}
	return s, nil
}

// SchedulerConfig configures the scheduled snapshots of one server.
type SchedulerConfig struct {
	Schedule  Schedule
	Spec      string // the cron text, for the logs
	Retention int    // scheduled snapshots of this node kept
	Dir       string
	Node      string
	Compress  bool
	// Etcd returns the client of the local member (shared, not closed).
	Etcd func() (*clientv3.Client, error)
	// Bootstrap returns the sealed CAs to store before each snapshot; nil
	// stores nothing.
	Bootstrap func() ([]byte, error)
	Log       *slog.Logger
}

// Scheduler takes a snapshot at each time of the schedule and prunes the
// scheduled snapshots of this node to Retention. A failed snapshot is
// logged; the next one is tried at its time.
type Scheduler struct {
	component.Background
	cfg SchedulerConfig
}

var _ component.Component = (*Scheduler)(nil)
var _ component.Failer = (*Scheduler)(nil)

// NewScheduler returns the component; nothing runs until Start.
func NewScheduler(cfg SchedulerConfig) *Scheduler {
	cfg.Log = cfg.Log.With("component", "etcd-snapshot")
	return &Scheduler{cfg: cfg}
}

// Name implements component.Component.
func (*Scheduler) Name() string { return "etcd-snapshot" }

// Start implements component.Component.
func (s *Scheduler) Start(ctx context.Context) error {
	if s.cfg.Retention < 1 {
		return fmt.Errorf("--etcd-snapshot-retention %d: keep at least 1", s.cfg.Retention)
	}
	if err := ensureDir(s.cfg.Dir); err != nil {
		return err
	}
	s.Context(ctx)
	s.Go(s.run)
	s.cfg.Log.Info("scheduled etcd snapshots", "cron", s.cfg.Spec, "next", s.cfg.Schedule.Next(time.Now()).Format(time.RFC3339), "dir", s.cfg.Dir, "retention", s.cfg.Retention)
	return nil
}

// Ready implements component.Component.
func (*Scheduler) Ready(context.Context) error { return nil }

func (s *Scheduler) run(ctx context.Context) error {
	for {
		next := s.cfg.Schedule.Next(time.Now())
		t := time.NewTimer(time.Until(next))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		if _, _, err := s.Snapshot(ctx, next); err != nil && ctx.Err() == nil {
			s.cfg.Log.Error("scheduled etcd snapshot failed; the next is tried at its time", "err", err, "next", s.cfg.Schedule.Next(time.Now()).Format(time.RFC3339))
		}
	}
}

// Snapshot takes one scheduled snapshot, named for at, and prunes.
func (s *Scheduler) Snapshot(ctx context.Context, at time.Time) (Info, []Info, error) {
	ctx, cancel := context.WithTimeout(ctx, snapshotTimeout)
	defer cancel()
	client, err := s.cfg.Etcd()
	if err != nil {
		return Info{}, nil, err
	}
	opts := SaveOptions{Dir: s.cfg.Dir, Prefix: ScheduledPrefix, Node: s.cfg.Node, Compress: s.cfg.Compress, Now: at}
	if s.cfg.Bootstrap != nil {
		if opts.Bootstrap, err = s.cfg.Bootstrap(); err != nil {
			return Info{}, nil, err
		}
	}
	begin := time.Now()
	in, err := Save(ctx, client, opts)
	if err != nil {
		return Info{}, nil, err
	}
	pruned, err := Prune(s.cfg.Dir, ScheduledPrefix, s.cfg.Node, s.cfg.Retention)
	names := make([]string, 0, len(pruned))
	for _, p := range pruned {
		names = append(names, p.Name)
	}
	s.cfg.Log.Info("etcd snapshot saved", "name", in.Name, "bytes", in.Size, "took", time.Since(begin).Round(time.Millisecond), "pruned", names)
	if err != nil {
		return in, pruned, fmt.Errorf("prune: %w", err)
	}
	return in, pruned, nil
}
