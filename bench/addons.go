package bench

import (
	"context"
	"fmt"
)

// Addons are the built-in add-ons of kedge whose idle memory the addons
// part measures, by their --disable names (pkg/server's Addon* constants;
// kedge refuses a name it does not know, so a renamed one fails the run).
var Addons = []string{"servicelb", "local-storage", "metrics-server", "network-policy"}

// MetricAddonRSS is the idle RSS add-on name adds: kedge's idle RSS with
// every add-on minus that with name disabled.
func MetricAddonRSS(name string) Metric {
	return Metric{Name: fmt.Sprintf("add-on %s: idle RSS it adds", name), Unit: "MiB", Decimals: 1}
}

// MetricAddonAnon is the idle anonymous memory (RssAnon) add-on name adds.
func MetricAddonAnon(name string) Metric {
	return Metric{Name: fmt.Sprintf("add-on %s: idle anonymous it adds", name), Unit: "MiB", Decimals: 1}
}

// The sums over Addons of their rows.
var (
	MetricAddonsRSS  = Metric{Name: "the four add-ons: idle RSS they add (sum of the above)", Unit: "MiB", Decimals: 1}
	MetricAddonsAnon = Metric{Name: "the four add-ons: idle anonymous they add (sum of the above)", Unit: "MiB", Decimals: 1}
)

// AddonMetrics are the rows of the addons part, in table order.
func AddonMetrics() []Metric {
	var out []Metric
	for _, a := range Addons {
		out = append(out, MetricAddonRSS(a), MetricAddonAnon(a))
	}
	return append(out, MetricAddonsRSS, MetricAddonsAnon)
}

// AddAddonCosts records one run's costs: ref is the idle sample with every
// add-on, without[i] the one with Addons[i] disabled.
func AddAddonCosts(r *Results, setup string, ref Usage, without []Usage) error {
	if len(without) != len(Addons) {
		return fmt.Errorf("add-ons: %d samples for %d add-ons", len(without), len(Addons))
	}
	var rss, anon float64
	for i, a := range Addons {
		dr := (float64(ref.RSS) - float64(without[i].RSS)) / mib
		da := (float64(ref.Anon) - float64(without[i].Anon)) / mib
		r.Add(MetricAddonRSS(a), setup, dr)
		r.Add(MetricAddonAnon(a), setup, da)
		rss, anon = rss+dr, anon+da
	}
	r.Add(MetricAddonsRSS, setup, rss)
	r.Add(MetricAddonsAnon, setup, anon)
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
