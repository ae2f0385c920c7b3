// Package diskguard keeps a server's etcd from running into a full disk.
// etcd ends the process when a write to its WAL fails (a full disk is one
// such failure), and its own NOSPACE alarm fires only when the database
// outgrows its quota, not when the disk fills. The guard watches the free
// space of the filesystem that holds etcd's data and acts in two stages:
//
//  1. Under Config.MinFree it records a Warning Event and marks the server
//     low in etcd (key KeyPrefix+<node>); every server's apiserver then
//     refuses writes (507, with the reason and the remedy) but those that
//     keep the cluster alive: Leases (node heartbeats, leader election)
//     and deletions, which free space. Reads go on.
//  2. Under half of MinFree it raises etcd's NOSPACE alarm for the local
//     member: etcd refuses every write, so that its last bytes are never
//     needed.
//
// When the space comes back (MinFree and a margin) both are lifted and a
// Normal Event says so: writes resume with nothing lost.
//
//	g := diskguard.New(diskguard.Config{Dir: dbDir, Node: "a", MinFree: 256 << 20, Etcd: local, Log: log})
//	apiserverCfg.Wrap = g.Filter
package diskguard

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/sys/unix"

	"github.com/kedge-io/kedge/pkg/component"
)

// DefaultMinFree is the free space under which writes stop (--etcd-min-free):
// room for a few of etcd's 64 MiB WAL segments and a snapshot.
const DefaultMinFree = 256 << 20

// markerName is the file, in Config.Dir, that says the guard raised the
// alarm: a restarted server disarms its own alarm, never one that etcd
// raised for an oversized database.
const markerName = "kedge-nospace-alarm"

// KeyPrefix is the etcd prefix of the servers whose disk is low: the value
// of KeyPrefix+<node> is the message their apiservers answer writes with.
const KeyPrefix = "/kedge/diskguard/low/"

// Reporter records what the guard does where users look (Events on the
// server's Node); it may fail, e.g. when writes are already refused.
type Reporter interface {
	Report(ctx context.Context, warning bool, reason, message string) error
}

// Config configures the guard.
type Config struct {
	// Dir is etcd's data dir; the guard watches its filesystem.
	Dir string
	// Node names this server in the cluster-wide mark and the Events.
	Node string
	// MinFree is the free space, in bytes, under which the alarm is raised.
	MinFree uint64
	// Interval is how often the free space is read (default 2 s).
	Interval time.Duration
	// Etcd returns a client of the local etcd member (shared, not closed).
	Etcd func() (*clientv3.Client, error)
	// Report records the guard's Events (may be nil).
	Report Reporter
	Log    *slog.Logger
}

// Guard is the component.
type Guard struct {
	cfg  Config
	stop context.CancelFunc
	done chan struct{}

	free func(dir string) (uint64, error) // FreeBytes; tests set it

	mu     sync.Mutex
	low    bool              // stage 1: this server marked low
	raised bool              // stage 2: NOSPACE raised by this guard
	marks  map[string]string // every server marked low → its message

	refusal atomic.Pointer[string] // the marks' messages joined (see Refusal), kept by setMarks
}

var _ component.Component = (*Guard)(nil)

// New returns the guard.
func New(cfg Config) *Guard {
	if cfg.Interval == 0 {
		cfg.Interval = 2 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Guard{cfg: cfg, free: FreeBytes, marks: map[string]string{}}
}

// Name is "diskguard".
func (*Guard) Name() string { return "diskguard" }

// Start checks the free space once (so that a server started on a full
// disk refuses writes at once) and then every Interval.
func (g *Guard) Start(ctx context.Context) error {
	if _, err := g.free(g.cfg.Dir); err != nil {
		return fmt.Errorf("free space of %s: %w", g.cfg.Dir, err)
	}
	if _, err := os.Stat(filepath.Join(g.cfg.Dir, markerName)); err == nil {
		g.raised = true // raised before a restart: ours to disarm
	}
	ctx, g.stop = context.WithCancel(context.WithoutCancel(ctx))
	g.done = make(chan struct{})
	go g.watchMarks(ctx)
	go func() {
		defer close(g.done)
		tick := time.NewTicker(g.cfg.Interval)
		defer tick.Stop()
		for {
			if err := g.Check(ctx); err != nil && ctx.Err() == nil {
				g.cfg.Log.Warn("checking the data dir's free space", "dir", g.cfg.Dir, "error", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return nil
}

// Ready returns at once.
func (*Guard) Ready(context.Context) error { return nil }

// Stop ends the checks.
func (g *Guard) Stop(ctx context.Context) error {
	if g.stop == nil {
		return nil
	}
	g.stop()
	select {
	case <-g.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Raised reports whether the guard's alarm is on.
func (g *Guard) Raised() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.raised
}

// Check reads the free space once and moves between the stages.
func (g *Guard) Check(ctx context.Context) error {
	free, err := g.free(g.cfg.Dir)
	if err != nil {
		return err
	}
	g.mu.Lock()
	low, raised := g.low, g.raised
	g.mu.Unlock()
	// Hysteresis: lift only with MinFree and a margin free, so that a disk
	// at the edge does not flap.
	resume := g.cfg.MinFree + max(g.cfg.MinFree/4, 32<<20)
	var errs []error
	if !low && free < g.cfg.MinFree {
		errs = append(errs, g.markLow(ctx, free))
	}
	if !raised && free < g.cfg.MinFree/2 {
		errs = append(errs, g.raise(ctx, free))
	}
	if (low || raised) && free >= resume {
		errs = append(errs, g.recover(ctx, free))
	}
	return errors.Join(errs...)
}

// markLow records the Event first, then marks this server low in etcd:
// writes stop cluster-wide (but Leases and deletions).
func (g *Guard) markLow(ctx context.Context, free uint64) error {
	msg := fmt.Sprintf("server %s: the filesystem of %s has %s free, under --etcd-min-free %s: the cluster refuses writes (reads, Leases and deletions go on) until space is freed there; nothing is lost",
		g.cfg.Node, g.cfg.Dir, mib(free), mib(g.cfg.MinFree))
	g.cfg.Log.Error("data dir nearly full: writes stopped", "dir", g.cfg.Dir, "free_mib", free>>20, "min_free_mib", g.cfg.MinFree>>20,
		"remedy", "free space on that filesystem (unused images: kedge crictl rmi --prune; logs), or lower --etcd-min-free")
	g.report(ctx, true, "DataDirFull", msg)
	c, err := g.cfg.Etcd()
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := c.Put(wctx, KeyPrefix+g.cfg.Node, msg); err != nil {
		return fmt.Errorf("mark %s low in etcd: %w", g.cfg.Node, err)
	}
	g.mu.Lock()
	g.low = true
	g.marks[g.cfg.Node] = msg // before the watch confirms it
	g.marksChanged()
	g.mu.Unlock()
	return nil
}

// raise writes the marker, then raises NOSPACE for the local member:
// etcd refuses every write.
func (g *Guard) raise(ctx context.Context, free uint64) error {
	g.cfg.Log.Error("data dir almost full: etcd's NOSPACE alarm raised, etcd refuses every write", "dir", g.cfg.Dir, "free_mib", free>>20)
	_ = os.WriteFile(filepath.Join(g.cfg.Dir, markerName), []byte(time.Now().UTC().Format(time.RFC3339)+"\n"), 0o600)
	c, id, err := g.member(ctx)
	if err != nil {
		return err
	}
	_, err = pb.NewMaintenanceClient(c.ActiveConnection()).Alarm(ctx, &pb.AlarmRequest{
		Action: pb.AlarmRequest_ACTIVATE, MemberID: id, Alarm: pb.AlarmType_NOSPACE,
	})
	if err != nil {
		return fmt.Errorf("raise etcd's NOSPACE alarm: %w", err)
	}
	g.mu.Lock()
	g.raised = true
	g.mu.Unlock()
	return nil
}

// recover lifts the alarm (if this guard raised it) and the mark, and
// records a Normal Event.
func (g *Guard) recover(ctx context.Context, free uint64) error {
	c, err := g.cfg.Etcd()
	if err != nil {
		return err
	}
	g.mu.Lock()
	raised := g.raised
	g.mu.Unlock()
	if raised {
		_, id, err := g.member(ctx)
		if err != nil {
			return err
		}
		if _, err := c.AlarmDisarm(ctx, &clientv3.AlarmMember{MemberID: id, Alarm: pb.AlarmType_NOSPACE}); err != nil {
			return fmt.Errorf("disarm etcd's NOSPACE alarm: %w", err)
		}
		if err := os.Remove(filepath.Join(g.cfg.Dir, markerName)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		g.mu.Lock()
		g.raised = false
		g.mu.Unlock()
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := c.Delete(wctx, KeyPrefix+g.cfg.Node); err != nil {
		return fmt.Errorf("unmark %s in etcd: %w", g.cfg.Node, err)
	}
	g.mu.Lock()
	g.low = false
	delete(g.marks, g.cfg.Node)
	g.marksChanged()
	g.mu.Unlock()
	g.cfg.Log.Info("data dir has space again: writes resumed", "dir", g.cfg.Dir, "free_mib", free>>20)
	g.report(ctx, false, "DataDirSpaceRecovered", fmt.Sprintf("server %s: the filesystem of %s has %s free again: the cluster accepts writes", g.cfg.Node, g.cfg.Dir, mib(free)))
	return nil
}

// report records an Event, if the guard has a reporter.
func (g *Guard) report(ctx context.Context, warning bool, reason, msg string) {
	if g.cfg.Report == nil {
		return
	}
	if err := g.cfg.Report.Report(ctx, warning, reason, msg); err != nil {
		g.cfg.Log.Warn("could not record the "+reason+" event", "error", err)
	}
}

// member returns the client and the local member's ID.
func (g *Guard) member(ctx context.Context) (*clientv3.Client, uint64, error) {
	c, err := g.cfg.Etcd()
	if err != nil {
		return nil, 0, err
	}
	eps := c.Endpoints()
	if len(eps) == 0 {
		return nil, 0, errors.New("the etcd client has no endpoint")
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := c.Status(ctx, eps[0])
	if err != nil {
		return nil, 0, fmt.Errorf("etcd status: %w", err)
	}
	return c, st.Header.MemberId, nil
}

// FreeBytes is the space available to unprivileged writers on dir's
// filesystem (etcd runs as root, but the reserve is what keeps the host alive).
func FreeBytes(dir string) (uint64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return st.Bavail * uint64(st.Bsize), nil
}

// mib formats bytes as "123 MiB".
func mib(b uint64) string { return fmt.Sprintf("%d MiB", b>>20) }
