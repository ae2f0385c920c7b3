package bench

import (
	"context"
	"fmt"
)

// Addons are the built-in add-ons of kedge whose idle memory the addons
// part measures, by their --disable names (pkg/server's Addon* constants;
// kedge refuses a name it does not know, so a renamed one fails the run).
var Addons = []string{"servicelb", "local-storage", "metrics-server", "network-policy"}

// AddonRole is where the addons part measures what the add-ons cost: the
// single-node server (control plane and node in one process) or an agent
// (a node joined to a server; it learns the server's --disable at join).
type AddonRole string

// The roles the addons part measures.
const (
	AddonServer AddonRole = "server"
	AddonAgent  AddonRole = "agent"
)

// AddonRoles are the roles, in table order.
var AddonRoles = []AddonRole{AddonServer, AddonAgent}

// MetricAddonRSS is the idle RSS add-on name adds to a kedge of role: its
// idle RSS with every add-on minus that with name disabled.
func MetricAddonRSS(role AddonRole, name string) Metric {
	return Metric{Name: fmt.Sprintf("add-on %s: %s idle RSS it adds", name, role), Unit: "MiB", Decimals: 1}
}

// MetricAddonAnon is the idle anonymous memory (RssAnon) add-on name adds
// to a kedge of role.
func MetricAddonAnon(role AddonRole, name string) Metric {
	return Metric{Name: fmt.Sprintf("add-on %s: %s idle anonymous it adds", name, role), Unit: "MiB", Decimals: 1}
}

// MetricAddonsRSS is the sum over Addons of their RSS rows for role.
func MetricAddonsRSS(role AddonRole) Metric {
	return Metric{Name: fmt.Sprintf("the four add-ons: %s idle RSS they add (sum of the above)", role), Unit: "MiB", Decimals: 1}
}

// MetricAddonsAnon is the sum over Addons of their anonymous rows for role.
func MetricAddonsAnon(role AddonRole) Metric {
	return Metric{Name: fmt.Sprintf("the four add-ons: %s idle anonymous they add (sum of the above)", role), Unit: "MiB", Decimals: 1}
}

// AddonMetrics are the rows of the addons part for role, in table order.
func AddonMetrics(role AddonRole) []Metric {
	var out []Metric
	for _, a := range Addons {
		out = append(out, MetricAddonRSS(role, a), MetricAddonAnon(role, a))
	}
	return append(out, MetricAddonsRSS(role), MetricAddonsAnon(role))
}

// AddAddonCosts records one run's costs for role: ref is the idle sample
// with every add-on, without[i] the one with Addons[i] disabled.
func AddAddonCosts(r *Results, role AddonRole, setup string, ref Usage, without []Usage) error {
	if len(without) != len(Addons) {
		return fmt.Errorf("add-ons (%s): %d samples for %d add-ons", role, len(without), len(Addons))
	}
	var rss, anon float64
	for i, a := range Addons {
		dr := (float64(ref.RSS) - float64(without[i].RSS)) / mib
		da := (float64(ref.Anon) - float64(without[i].Anon)) / mib
		r.Add(MetricAddonRSS(role, a), setup, dr)
		r.Add(MetricAddonAnon(role, a), setup, da)
		rss, anon = rss+dr, anon+da
	}
	r.Add(MetricAddonsRSS(role), setup, rss)
	r.Add(MetricAddonsAnon(role), setup, anon)
	return nil
}

// IdleMemory starts s, waits for its first pod (of p.Image) to run, samples
// its memory p.IdleBefore later, as RunServer's idle sample is taken, and
// stops it. It records no row.
func IdleMemory(ctx context.Context, s Setup, exited <-chan struct{}, p Plan, what string) (u Usage, err error) {
	log := p.Log.With("setup", s.Name(), "run", what)
	stop, err := start(ctx, log, s, what)
	if err != nil {
		return Usage{}, err
	}
	defer stop(&err)
	st, err := WaitStart(ctx, s, StartWait{PodImage: p.Image, Exited: exited})
	if err != nil {
		return Usage{}, err
	}
	log.Info("up", "api", st.APIReady, "node", st.NodeReady, "pod", st.PodRunning)
	if err := sleep(ctx, p.IdleBefore); err != nil {
		return Usage{}, err
	}
	if u, err = SampleMemory(s); err != nil {
		return Usage{}, err
	}
	log.Info("idle memory", "procs", u.Procs, "rss_mib", u.RSS/mib, "pss_mib", u.PSS/mib, "anon_mib", u.Anon/mib, "private_dirty_mib", u.PrivateDirty/mib)
	return u, nil
}
