// Package checkconfig checks that a host can run a kedge node, as
// `kedge check-config` prints it: the kernel, cgroups, filesystems, the
// network devices and netfilter the pod network needs, the sysctls,
// swap, capabilities, free disk in the data dir and the ports kedge binds.
// Each check says PASS, WARN or FAIL and, when it is not PASS, the fix.
//
//	results := checkconfig.Run(checkconfig.Config{DataDir: "/var/lib/kedge", Ports: ports})
//	checkconfig.Print(os.Stdout, results)
//	if checkconfig.Failed(results) { os.Exit(1) }
package checkconfig

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/kedge-io/kedge/pkg/agent"
)

// Status is a check's verdict.
type Status string

// The verdicts: FAIL means kedge will not run (or not fully), WARN that it
// runs with a limit the detail names.
const (
	Pass Status = "PASS"
	Warn Status = "WARN"
	Fail Status = "FAIL"
)

// Result is one check's outcome.
type Result struct {
	Name   string
	Status Status
	Detail string // what was found
	Fix    string // what to do, when not PASS
}

// Config is what the checks need to know about the node to be.
type Config struct {
	// DataDir is kedge's data dir (--data-dir); its filesystem's free space
	// is checked (the closest existing parent when it does not exist yet).
	DataDir string
	// MinFree is the free space under which the disk check fails (the
	// server's --etcd-min-free); it warns under 2 GiB.
	MinFree uint64
	// Ports are the addresses kedge binds; each must be free.
	Ports []agent.Port
	// Proc and Sys are where /proc and /sys are ("" for the real ones);
	// tests point them at copies.
	Proc, Sys string
}

// Run runs every check, in the order Print shows them.
func Run(cfg Config) []Result {
	if cfg.Proc == "" {
		cfg.Proc = "/proc"
	}
	if cfg.Sys == "" {
		cfg.Sys = "/sys"
	}
	h := host{proc: cfg.Proc, sys: cfg.Sys}
	var out []Result
	out = append(out, checkRoot(), h.kernel())
	out = append(out, h.cgroups()...)
	out = append(out, h.overlayfs())
	out = append(out, links()...)
	out = append(out, ipsets()...)
	out = append(out, h.iptables(), h.brNetfilter(), h.ipForward(), h.ipvs(), h.swap())
	out = append(out, h.capabilities()...)
	out = append(out, disk(cfg.DataDir, cfg.MinFree))
	out = append(out, ports(cfg.Ports)...)
	return out
}

// Failed reports whether any check failed.
func Failed(results []Result) bool {
	for _, r := range results {
		if r.Status == Fail {
			return true
		}
	}
	return false
}

// Print writes the results as a table: check, status, what was found and,
// for WARN and FAIL, the fix; then a summary line.
func Print(w io.Writer, results []Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CHECK\tSTATUS\tDETAIL")
	counts := map[Status]int{}
	for _, r := range results {
		counts[r.Status]++
		detail := r.Detail
		if r.Status != Pass && r.Fix != "" {
			detail += " — fix: " + r.Fix
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", r.Name, r.Status, strings.ReplaceAll(detail, "\t", " "))
	}
	_ = tw.Flush()
	fmt.Fprintf(w, "\n%d checks: %d PASS, %d WARN, %d FAIL\n", len(results), counts[Pass], counts[Warn], counts[Fail])
}

// pass, warn and fail build results.
func pass(name, detail string) Result { return Result{Name: name, Status: Pass, Detail: detail} }
func warn(name, detail, fix string) Result {
	return Result{Name: name, Status: Warn, Detail: detail, Fix: fix}
}
func fail(name, detail, fix string) Result {
	return Result{Name: name, Status: Fail, Detail: detail, Fix: fix}
}
