package etcd

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// probeTimeout bounds the status request to one member.
const probeTimeout = 2 * time.Second

// Member is one etcd member as an operator sees it: its name (the server's
// node name), whether it votes, and whether it answered a status request.
type Member struct {
	ID         uint64
	Name       string // "" for a learner that has not started yet
	PeerURLs   []string
	ClientURLs []string
	Learner    bool
	Healthy    bool
	Problem    string // why it is not healthy
}

// label is the member's name, or its peer URLs when it has none yet.
func (m Member) label() string {
	if m.Name != "" {
		return m.Name
	}
	return strings.Join(m.PeerURLs, ",")
}

// Members lists the cluster's members, as the member c is connected to
// knows them, and asks each for its status (in parallel, at most 2 s each)
// through its client URLs.
func Members(ctx context.Context, c *clientv3.Client) ([]Member, error) {
	list, err := c.MemberList(ctx)
	if err != nil {
		return nil, fmt.Errorf("etcd member list: %w", err)
	}
	out := make([]Member, len(list.Members))
	var wg sync.WaitGroup
	for i, m := range list.Members {
		out[i] = Member{ID: m.ID, Name: m.Name, PeerURLs: m.PeerURLs, ClientURLs: m.ClientURLs, Learner: m.IsLearner}
		wg.Add(1)
		go func(mem *Member) {
			defer wg.Done()
			mem.Healthy, mem.Problem = probe(ctx, c, *mem)
		}(&out[i])
	}
	wg.Wait()
	sort.Slice(out, func(i, j int) bool { return out[i].label() < out[j].label() })
	return out, nil
}

// probe asks m for its status on each of its client URLs until one answers
// without errors.
func probe(ctx context.Context, c *clientv3.Client, m Member) (bool, string) {
	if len(m.ClientURLs) == 0 {
		return false, "not started (no client URL yet)"
	}
	problem := ""
	for _, u := range m.ClientURLs {
		pctx, cancel := context.WithTimeout(ctx, probeTimeout)
		st, err := c.Status(pctx, u)
		cancel()
		switch {
		case err != nil:
			problem = fmt.Sprintf("%s does not answer: %v", u, err)
		case len(st.Errors) > 0:
			problem = fmt.Sprintf("%s reports %s", u, strings.Join(st.Errors, "; "))
		case st.Leader == 0:
			problem = fmt.Sprintf("%s has no leader", u)
		default:
			return true, ""
		}
	}
	return false, problem
}

// quorum is how many of n voting members must agree for raft to commit.
func quorum(n int) int { return n/2 + 1 }

// ErrOnlyMember means the member asked to be removed is the cluster's only
// voting member: removing it would destroy the cluster.
var ErrOnlyMember = errors.New("it is the only voting member")

// QuorumError is a removal refused because the cluster has, or would be
// left, without a quorum of healthy voting members. It is temporary: it
// goes away when enough members are healthy again.
type QuorumError struct{ msg string }

func (e *QuorumError) Error() string { return e.msg }

// NotFoundError means no member has the name asked for.
type NotFoundError struct {
	Name    string
	Members []string
}

func (e *NotFoundError) Error() string {
	return fmt.Sprintf("no etcd member is named %q (members: %s)", e.Name, strings.Join(e.Members, ", "))
}

// CheckRemoval decides whether the member called name can be removed from
// members (as Members returned them) without losing quorum, and returns it.
// Raft needs a majority of the voting members both to commit the removal
// (of the current members) and to keep working afterwards (of the members
// that remain); learners do not vote and can always be removed. The errors
// explain the arithmetic with the members' names.
func CheckRemoval(members []Member, name string) (Member, error) {
	var target *Member
	var names []string
	for i := range members {
		names = append(names, members[i].label())
		if members[i].Name == name {
			target = &members[i]
		}
	}
	if target == nil {
		return Member{}, &NotFoundError{Name: name, Members: names}
	}
	if target.Learner {
		return *target, nil
	}
	var voters, healthy, remaining, remainingHealthy, down []string
	for _, m := range members {
		if m.Learner {
			continue
		}
		voters = append(voters, m.label())
		if m.Healthy {
			healthy = append(healthy, m.label())
		} else {
			down = append(down, m.label())
		}
		if m.ID != target.ID {
			remaining = append(remaining, m.label())
			if m.Healthy {
				remainingHealthy = append(remainingHealthy, m.label())
			}
		}
	}
	if len(voters) == 1 {
		return *target, fmt.Errorf("refusing to remove %s: %w; removing it would destroy the cluster's data", name, ErrOnlyMember)
	}
	if q := quorum(len(voters)); len(healthy) < q {
		return *target, &QuorumError{fmt.Sprintf(
			"refusing to remove %s: the cluster has lost quorum: %d of its %d voting members answer (%s), %d are needed to change the membership; %s down (%s) — bring enough of them back first",
			name, len(healthy), len(voters), listOrNone(healthy), q, isAre(len(down)), strings.Join(down, ", "))}
	}
	if q := quorum(len(remaining)); len(remainingHealthy) < q {
		var remainingDown []string
		for _, n := range remaining {
			if !slices.Contains(remainingHealthy, n) {
				remainingDown = append(remainingDown, n)
			}
		}
		return *target, &QuorumError{fmt.Sprintf(
			"refusing to remove %s: it would leave %d voting members (%s), whose quorum is %d, but only %d of them answer (%s); %s down (%s), so the cluster would stop accepting writes — bring %s back first, or remove %s instead",
			name, len(remaining), strings.Join(remaining, ", "), q, len(remainingHealthy), listOrNone(remainingHealthy),
			isAre(len(remainingDown)), strings.Join(remainingDown, ", "), strings.Join(remainingDown, ", "), strings.Join(remainingDown, " or "))}
	}
	return *target, nil
}

// RemoveMember removes the member called name after CheckRemoval allowed it.
func RemoveMember(ctx context.Context, c *clientv3.Client, name string) (Member, error) {
	members, err := Members(ctx, c)
	if err != nil {
		return Member{}, err
	}
	m, err := CheckRemoval(members, name)
	if err != nil {
		return m, err
	}
	if _, err := c.MemberRemove(ctx, m.ID); err != nil {
		return m, fmt.Errorf("etcd: remove member %s (%x): %w", name, m.ID, err)
	}
	return m, nil
}

func listOrNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

func isAre(n int) string {
	if n == 1 {
		return "1 is"
	}
	return fmt.Sprintf("%d are", n)
}
