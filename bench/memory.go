package bench

import (
	"fmt"
	"log/slog"
)

// The anonymous-memory rows of the idle and agent samples, beside their
// RSS and PSS rows (run.go).
var (
	MetricAnon      = Metric{Name: "idle memory: anonymous (RssAnon) sum", Unit: "MiB", Decimals: 0}
	MetricDirty     = Metric{Name: "idle memory: Private_Dirty sum", Unit: "MiB", Decimals: 0}
	MetricNodeAnon  = Metric{Name: "agent alone: idle anonymous (RssAnon) sum", Unit: "MiB", Decimals: 0}
	MetricNodeDirty = Metric{Name: "agent alone: idle Private_Dirty sum", Unit: "MiB", Decimals: 0}
)

// MemoryRows are the rows of one memory sample; a row with an empty name
// is not recorded.
type MemoryRows struct {
	Procs, RSS, PSS, Anon, Dirty Metric
}

// LoadMemoryRows are the rows of the sample at the end of the API part.
var LoadMemoryRows = MemoryRows{
	RSS:   Metric{Name: "after the API load: RSS sum", Unit: "MiB", Decimals: 0},
	Anon:  Metric{Name: "after the API load: anonymous (RssAnon) sum", Unit: "MiB", Decimals: 0},
	Dirty: Metric{Name: "after the API load: Private_Dirty sum", Unit: "MiB", Decimals: 0},
}

// ChurnMemoryRows are the rows of the sample taken when all n pods of the
// churn run.
func ChurnMemoryRows(n int32) MemoryRows {
	return MemoryRows{
		Procs: Metric{Name: fmt.Sprintf("with %d pods Running: processes (shims included)", n), Decimals: 0},
		RSS:   Metric{Name: fmt.Sprintf("with %d pods Running: RSS sum", n), Unit: "MiB", Decimals: 0},
		PSS:   Metric{Name: fmt.Sprintf("with %d pods Running: PSS sum", n), Unit: "MiB", Decimals: 0},
		Anon:  Metric{Name: fmt.Sprintf("with %d pods Running: anonymous (RssAnon) sum", n), Unit: "MiB", Decimals: 0},
		Dirty: Metric{Name: fmt.Sprintf("with %d pods Running: Private_Dirty sum", n), Unit: "MiB", Decimals: 0},
	}
}

// Metrics lists the rows with a name, in table order.
func (m MemoryRows) Metrics() []Metric {
	var out []Metric
	for _, x := range []Metric{m.Procs, m.RSS, m.PSS, m.Anon, m.Dirty} {
		if x.Name != "" {
			out = append(out, x)
		}
	}
	return out
}

// Add records u for setup in the named rows and logs it as what.
func (m MemoryRows) Add(r *Results, setup string, u Usage, log *slog.Logger, what string) {
	log.Info(what, "procs", u.Procs, "rss_mib", u.RSS/mib, "pss_mib", u.PSS/mib, "anon_mib", u.Anon/mib, "private_dirty_mib", u.PrivateDirty/mib)
	for _, x := range []struct {
		m Metric
		v float64
	}{{m.Procs, float64(u.Procs)}, {m.RSS, float64(u.RSS) / mib}, {m.PSS, float64(u.PSS) / mib},
		{m.Anon, float64(u.Anon) / mib}, {m.Dirty, float64(u.PrivateDirty) / mib}} {
		if x.m.Name != "" {
			r.Add(x.m, setup, x.v)
		}
	}
}

// MetricPerPodRSS is the RSS the setup grew by per pod of a churn to n.
func MetricPerPodRSS(n int32) Metric {
	return Metric{Name: fmt.Sprintf("memory per pod (shims + growth, 0 → %d): RSS", n), Unit: "MiB", Decimals: 2}
}

// MetricPerPodPSS is the PSS the setup grew by per pod of a churn to n:
// unlike the RSS row, a page the shims share (the shim binary's text, the
// C library) counts once in the sum, not once per shim.
func MetricPerPodPSS(n int32) Metric {
	return Metric{Name: fmt.Sprintf("memory per pod (shims + growth, 0 → %d): PSS", n), Unit: "MiB", Decimals: 2}
}

// MetricPerPodAnon is the anonymous memory the setup grew by per pod of a
// churn to n.
func MetricPerPodAnon(n int32) Metric {
	return Metric{Name: fmt.Sprintf("memory per pod (shims + growth, 0 → %d): anonymous", n), Unit: "MiB", Decimals: 2}
}

// MetricChurnUpRate is the scale-up throughput of a churn to n replicas.
func MetricChurnUpRate(n int32) Metric {
	return Metric{Name: fmt.Sprintf("Deployment 0 → %d: pods started", n), Unit: "/min", Decimals: 0}
}

// MetricChurnDownRate is the scale-down throughput of a churn from n replicas.
func MetricChurnDownRate(n int32) Metric {
	return Metric{Name: fmt.Sprintf("Deployment %d → 0: pods removed", n), Unit: "/min", Decimals: 0}
}

// perPod is the growth from before to at, in MiB per pod of n (negative
// if the setup shrank, e.g. a garbage collection in between).
func perPod(before, at uint64, n int32) float64 {
	return (float64(at) - float64(before)) / mib / float64(n)
}

// PerMinute is n events over d, per minute (0 for no time).
func PerMinute(n int32, seconds float64) float64 {
	if seconds <= 0 {
		return 0
	}
	return float64(n) / seconds * 60
}

// SampleMemory sums the memory of every process of s now.
func SampleMemory(s Setup) (Usage, error) {
	pids, err := s.PIDs()
	if err != nil {
		return Usage{}, fmt.Errorf("%s: pids: %w", s.Name(), err)
	}
	u, _, err := ProcFS{Root: "/proc"}.Measure(pids)
	if err != nil {
		return Usage{}, fmt.Errorf("%s: %w", s.Name(), err)
	}
	return u, nil
}
