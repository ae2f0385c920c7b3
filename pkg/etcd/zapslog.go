package etcd

import (
	"context"
	"log/slog"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap/zapcore"
)

// slogCore is a zapcore.Core that writes etcd's zap log entries to kedge's
// slog logger, so that etcd's lines look like every other component's.
type slogCore struct {
	log    *slog.Logger
	level  zapcore.Level
	fields []zapcore.Field
	// closing is set while the member shuts down: etcd then logs every
	// listener it closes as "setting up serving … failed", which is noise.
	closing *atomic.Bool
	// removed is set when etcd says its data dir must be removed: the
	// member was removed from the cluster (while it ran, or while it was
	// down and the other members now refuse it).
	removed *atomic.Bool
	// throttle limits the warnings a slow disk repeats on every write;
	// nil: no limit.
	throttle *throttle
}

// slowDiskMessages are etcd's warnings that a slow disk (or an overloaded
// host) repeats for every write or heartbeat: each is logged at most once
// per throttle period, with the number of times it was seen meanwhile.
var slowDiskMessages = map[string]bool{
	"slow fdatasync":              true,
	"apply request took too long": true,
	"request stats":               true, // etcd's detail of each slow request
	"leader failed to send out heartbeat on time; took too long, leader is overloaded likely from slow disk": true,
}

// throttle lets a message through once per period.
type throttle struct {
	period time.Duration
	now    func() time.Time

	mu   sync.Mutex
	last map[string]time.Time
	seen map[string]int // since the last one let through
}

// newThrottle returns a throttle of period.
func newThrottle(period time.Duration) *throttle {
	return &throttle{period: period, now: time.Now, last: map[string]time.Time{}, seen: map[string]int{}}
}

// allow reports whether msg may be logged now and, if so, how many times
// it was held back since it last was.
func (t *throttle) allow(msg string) (bool, int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	if last, ok := t.last[msg]; ok && now.Sub(last) < t.period {
		t.seen[msg]++
		return false, 0
	}
	held := t.seen[msg]
	t.last[msg], t.seen[msg] = now, 0
	return true, held
}

// removedMessage is what etcd logs when it stops because this member was
// removed from the cluster (etcdserver's run loop, on its error channel,
// which carries only the removal).
const removedMessage = "data-dir used by this member must be removed"

// removedPanicHook keeps etcd's panics, except the one a removed member
// hits in the second before it stops: a status request then finds the local
// member gone from the membership and etcd panics
// ("failed to find local ID in cluster members", membership.RaftCluster's
// IsLocalMemberLearner), which would kill the whole kedge process before it
// can stop cleanly. That request's goroutine ends instead (the client times
// out); the member stops by itself a moment later.
type removedPanicHook struct{}

func (removedPanicHook) OnWrite(ce *zapcore.CheckedEntry, fields []zapcore.Field) {
	if ce.Message == localMemberGone {
		runtime.Goexit()
	}
	zapcore.WriteThenPanic.OnWrite(ce, fields)
}

// localMemberGone is etcd's panic when the local member is not in the
// membership any more.
const localMemberGone = "failed to find local ID in cluster members"

func (c *slogCore) Enabled(l zapcore.Level) bool { return l >= c.level }

func (c *slogCore) With(fields []zapcore.Field) zapcore.Core {
	clone := *c
	clone.fields = append(append([]zapcore.Field{}, c.fields...), fields...)
	return &clone
}

func (c *slogCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *slogCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	if c.closing.Load() && e.Message == "setting up serving from embedded etcd failed." {
		return nil
	}
	if e.Message == removedMessage {
		c.removed.Store(true)
	}
	held := 0
	if c.throttle != nil && slowDiskMessages[e.Message] {
		ok, n := c.throttle.allow(e.Message)
		if !ok {
			return nil
		}
		held = n
	}
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range c.fields {
		f.AddTo(enc)
	}
	for _, f := range fields {
		f.AddTo(enc)
	}
	keys := make([]string, 0, len(enc.Fields))
	for k := range enc.Fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	attrs := make([]slog.Attr, 0, len(keys))
	for _, k := range keys {
		attrs = append(attrs, slog.Any(k, enc.Fields[k]))
	}
	if held > 0 {
		attrs = append(attrs, slog.Int("repeated_since_last_logged", held))
	}
	c.log.LogAttrs(context.Background(), slogLevel(e.Level), e.Message, attrs...)
	return nil
}

func (c *slogCore) Sync() error { return nil }

func slogLevel(l zapcore.Level) slog.Level {
	switch {
	case l <= zapcore.DebugLevel:
		return slog.LevelDebug
	case l == zapcore.InfoLevel:
		return slog.LevelInfo
	case l == zapcore.WarnLevel:
		return slog.LevelWarn
	default:
		return slog.LevelError
	}
}
