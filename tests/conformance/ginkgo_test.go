package conformance

import (
	"context"
	"encoding/xml"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// phase is one ginkgo run of the suite.
type phase struct {
	name    string // file names: <name>.xml (JUnit), <name>.log (ginkgo's output)
	labels  string // ginkgo --label-filter ("" for none)
	focus   string // ginkgo --focus ("" for none)
	procs   int
	timeout time.Duration
	// selects says whether a spec's full text is one the phase means to
	// run: the others in the report (filtered out) are not counted.
	selects func(name string) bool
}

// result is what a phase's JUnit report says about the specs it selected.
type result struct {
	passed, failed, skipped []string
	took                    time.Duration
}

// add appends o's specs to r's.
func (r *result) add(o result) {
	r.passed = append(r.passed, o.passed...)
	r.failed = append(r.failed, o.failed...)
	r.skipped = append(r.skipped, o.skipped...)
	r.took += o.took
}

// Summary is the line `N passed, M failed, K skipped` and the failed specs,
// one a line.
func (r result) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d passed, %d failed, %d skipped in %s", len(r.passed), len(r.failed), len(r.skipped), r.took.Round(time.Second))
	for _, f := range r.failed {
		b.WriteString("\nFAILED: " + f)
	}
	return b.String()
}

// procs is the ginkgo processes for parallel phases: $KEDGE_CONFORMANCE_PROCS,
// default 2.
func procs(t *testing.T) int {
	s := os.Getenv("KEDGE_CONFORMANCE_PROCS")
	if s == "" {
		return 2
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		t.Fatalf("KEDGE_CONFORMANCE_PROCS=%q: want a number of processes (1 or more)", s)
	}
	return n
}

// run runs one phase with ginkgo against the cluster, writing its JUnit
// report and output to cl.dir, and returns what it reports. A spec that
// fails does not fail the Go test here; the caller decides.
func (cl *cluster) run(t *testing.T, tools string, p phase) result {
	t.Helper()
	junit := filepath.Join(cl.dir, p.name+".xml")
	logFile := filepath.Join(cl.dir, p.name+".log")
	args := []string{"--procs=" + strconv.Itoa(p.procs), "--timeout=" + p.timeout.String(),
		"--output-dir=" + cl.dir, "--junit-report=" + p.name + ".xml", "--no-color", "--poll-progress-after=10m", "--silence-skips"}
	if p.labels != "" {
		args = append(args, "--label-filter="+p.labels)
	}
	if p.focus != "" {
		args = append(args, "--focus="+p.focus)
	}
	e2eOut := filepath.Join(cl.dir, p.name+"-artifacts")
	if err := os.MkdirAll(e2eOut, 0o755); err != nil {
		t.Fatal(err)
	}
	args = append(args, filepath.Join(tools, "e2e.test"), "--",
		"--kubeconfig="+cl.kubeconfig, "--provider=skeleton", "--kubectl-path="+cl.kubectl,
		"--e2e-output-dir="+e2eOut, "--dump-logs-on-failure=true", "--disable-log-dump")
	f, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx, cancel := context.WithTimeout(context.Background(), p.timeout+5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(tools, "ginkgo"), args...)
	cmd.Stdout, cmd.Stderr, cmd.Dir = f, f, cl.dir
	cmd.Env = append(os.Environ(), "KUBECONFIG="+cl.kubeconfig)
	t.Logf("phase %s: ginkgo %s (output: %s)", p.name, strings.Join(args, " "), logFile)
	begin := time.Now()
	var r result
	cl.c.Step("ginkgo "+p.name, func() {
		runErr := cmd.Run()
		r, err = readJUnit(junit, p)
		if err != nil {
			t.Fatalf("phase %s: ginkgo: %v; its report: %v; the last lines of %s:\n%s", p.name, runErr, err, logFile, tail(logFile, 40))
		}
	})
	r.took = time.Since(begin)
	t.Logf("phase %s: %s", p.name, r.Summary())
	return r
}

// junitSuites is the part of ginkgo's JUnit report read here.
type junitSuites struct {
	Suites []struct {
		Cases []struct {
			Name    string `xml:"name,attr"`
			Status  string `xml:"status,attr"`
			Failure *struct {
				Message string `xml:"message,attr"`
			} `xml:"failure"`
			Error *struct {
				Message string `xml:"message,attr"`
			} `xml:"error"`
			Skipped *struct{} `xml:"skipped"`
		} `xml:"testcase"`
	} `xml:"testsuite"`
}

// labelList is the list of a spec's labels ginkgo's JUnit report appends
// to its name (" [sig-node, Serial, Conformance]"): dropped, the name is the
// spec's text, as --focus and the conformance list name it.
var labelList = regexp.MustCompile(` \[[^\[\]]*, [^\[\]]*\]$`)

// readJUnit reads the report of phase p: the specs ([It]) p selects, by
// outcome.
func readJUnit(file string, p phase) (result, error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return result{}, err
	}
	var s junitSuites
	if err := xml.Unmarshal(raw, &s); err != nil {
		return result{}, fmt.Errorf("%s: %w", file, err)
	}
	var r result
	for _, ts := range s.Suites {
		for _, c := range ts.Cases {
			name, spec := strings.CutPrefix(labelList.ReplaceAllString(c.Name, ""), "[It] ")
			if !spec {
				// [SynchronizedBeforeSuite] and the like: count their failures.
				if c.Failure != nil || c.Error != nil {
					r.failed = append(r.failed, c.Name)
				}
				continue
			}
			if !p.selects(name) {
				continue
			}
			switch {
			case c.Failure != nil || c.Error != nil || c.Status == "failed" || c.Status == "panicked" || c.Status == "timedout" || c.Status == "interrupted":
				r.failed = append(r.failed, name)
			case c.Skipped != nil || c.Status == "skipped" || c.Status == "pending":
				r.skipped = append(r.skipped, name)
			default:
				r.passed = append(r.passed, name)
			}
		}
	}
	sort.Strings(r.failed)
	return r, nil
}

// tail is the last n lines of a file.
func tail(file string, n int) string {
	raw, err := os.ReadFile(file)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
