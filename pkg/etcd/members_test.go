package etcd

import (
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// cluster builds a member list: names with a trailing "!" are down, with a
// leading "~" are learners.
func cluster(names ...string) []Member {
	var out []Member
	for i, n := range names {
		m := Member{ID: uint64(i + 1), Healthy: true}
		if strings.HasPrefix(n, "~") {
			m.Learner, n = true, n[1:]
		}
		if strings.HasSuffix(n, "!") {
			m.Healthy, m.Problem, n = false, "does not answer", n[:len(n)-1]
		}
		m.Name = n
		out = append(out, m)
	}
	return out
}

func TestCheckRemoval(t *testing.T) {
	for _, tc := range []struct {
		name    string
		members []Member
		remove  string
		// kind: "" allowed, "quorum", "only", "missing"
		kind string
		want []string // substrings of the error
	}{
		{name: "3 healthy, remove one", members: cluster("a", "b", "c"), remove: "c"},
		{name: "3, c down, remove the dead one", members: cluster("a", "b", "c!"), remove: "c"},
		{name: "2 healthy, remove one", members: cluster("a", "b"), remove: "b"},
		{name: "5, one down, remove a healthy one", members: cluster("a", "b", "c", "d", "e!"), remove: "a"},
		{name: "learner, even with quorum lost", members: cluster("a", "b!", "c!", "~d"), remove: "d"},
		{
			name: "3, c down, remove healthy b", members: cluster("a", "b", "c!"), remove: "b", kind: "quorum",
			want: []string{"refusing to remove b", "leave 2 voting members (a, c)", "quorum is 2", "only 1 of them answer (a)", "1 is down (c)", "bring c back first, or remove c instead"},
		},
		{
			name: "2, b down, remove b: the change itself cannot commit", members: cluster("a", "b!"), remove: "b", kind: "quorum",
			want: []string{"lost quorum", "1 of its 2 voting members answer (a)", "2 are needed", "1 is down (b)"},
		},
		{
			name: "3, two down", members: cluster("a", "b!", "c!"), remove: "c", kind: "quorum",
			want: []string{"lost quorum", "1 of its 3 voting members answer (a)", "2 are needed", "2 are down (b, c)"},
		},
		{
			name: "5, two down, remove a healthy one", members: cluster("a", "b", "c", "d!", "e!"), remove: "a", kind: "quorum",
			want: []string{"leave 4 voting members (b, c, d, e)", "quorum is 3", "only 2 of them answer (b, c)", "bring d, e back first, or remove d or e instead"},
		},
		{
			name: "the only voter", members: cluster("a", "~b"), remove: "a", kind: "only",
			want: []string{"refusing to remove a", "only voting member", "destroy"},
		},
		{
			name: "no such member", members: cluster("a", "b"), remove: "x", kind: "missing",
			want: []string{`no etcd member is named "x"`, "members: a, b"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := CheckRemoval(tc.members, tc.remove)
			var q *QuorumError
			var nf *NotFoundError
			switch tc.kind {
			case "":
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if m.Name != tc.remove || m.ID == 0 {
					t.Fatalf("member = %+v", m)
				}
				return
			case "quorum":
				if !errors.As(err, &q) {
					t.Fatalf("err = %v, want a QuorumError", err)
				}
			case "only":
				if !errors.Is(err, ErrOnlyMember) {
					t.Fatalf("err = %v, want ErrOnlyMember", err)
				}
			case "missing":
				if !errors.As(err, &nf) {
					t.Fatalf("err = %v, want a NotFoundError", err)
				}
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestQuorum(t *testing.T) {
	for n, want := range map[int]int{1: 1, 2: 2, 3: 2, 4: 3, 5: 3, 7: 4} {
		if got := quorum(n); got != want {
			t.Errorf("quorum(%d) = %d, want %d", n, got, want)
		}
	}
}

// TestRemovedMessageSetsRemoved: etcd's own line about a removed member is
// what tells kedge that its member was removed.
func TestRemovedMessageSetsRemoved(t *testing.T) {
	var closing, removed atomic.Bool
	core := &slogCore{log: slog.New(slog.NewTextHandler(io.Discard, nil)), level: zapcore.WarnLevel, closing: &closing, removed: &removed}
	_ = core.Write(zapcore.Entry{Level: zapcore.WarnLevel, Message: "server error"}, nil)
	if removed.Load() {
		t.Fatal("removed set by another line")
	}
	_ = core.Write(zapcore.Entry{Level: zapcore.WarnLevel, Message: removedMessage}, nil)
	if !removed.Load() {
		t.Fatal("removed not set by etcd's removal line")
	}
}

// TestRemovedPanicHook: etcd's panic on a removed member ends only the
// goroutine that hit it; every other etcd panic still panics.
func TestRemovedPanicHook(t *testing.T) {
	var closing, removed atomic.Bool
	log := zap.New(&slogCore{log: slog.New(slog.NewTextHandler(io.Discard, nil)), level: zapcore.WarnLevel, closing: &closing, removed: &removed},
		zap.WithPanicHook(removedPanicHook{}))
	returned, unwound := false, make(chan struct{})
	go func() {
		defer close(unwound)
		log.Panic(localMemberGone)
		returned = true
	}()
	<-unwound
	if returned {
		t.Fatal("the removed-member panic returned to its caller")
	}
	defer func() {
		if r := recover(); r != "another invariant" {
			t.Fatalf("recover() = %v, want etcd's other panics kept", r)
		}
	}()
	log.Panic("another invariant")
}
