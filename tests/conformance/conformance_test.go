package conformance

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Label filters of the full run, as the conformance program (sonobuoy's
// certified-conformance mode) runs the suite: every [Conformance] spec; the
// [Serial] ones alone after the others. The suite labels each spec with the
// bracketed words of its name (Conformance, Serial, Disruptive).
const (
	parallelLabels = "Conformance && !Serial && !Disruptive"
	serialLabels   = "Conformance && Serial && !Disruptive"
)

// isConformance and isSerial read a spec's name as the labels above do.
func isConformance(name string) bool {
	return strings.Contains(name, "[Conformance]") && !strings.Contains(name, "[Disruptive]")
}

func isSerial(name string) bool { return strings.Contains(name, "[Serial]") }

// sliceSpecs are the specs of the CI slice (TestConformanceSlice), named by
// the start of their full text after the SIG: [Conformance] specs that
// cover DNS, Services, exec, logs and attach, ConfigMap/Secret/projected
// and downward API volumes and the scheduler, plus kubectl port-forward
// (no [Conformance] spec port-forwards; these two are the suite's own
// port-forward specs, run by the same binary).
// Kubernetes 1.37 puts the labels ([Serial], [NodeConformance]) after the
// text, so a name ends before them.
var sliceSpecs = []string{
	// DNS
	"[sig-network] DNS should provide DNS for the cluster [Conformance]",
	"[sig-network] DNS should provide DNS for services ",
	"[sig-network] DNS should provide DNS for pods for Hostname ",
	"[sig-network] DNS should provide /etc/hosts entries for the cluster ",
	"[sig-network] DNS should support configurable pod DNS nameservers ",
	// Services (kube-proxy, EndpointSlices, NodePorts)
	"[sig-network] Services should serve a basic endpoint from pods ",
	"[sig-network] Services should serve multiport endpoints from pods ",
	"[sig-network] Services should be able to create a functioning NodePort service ",
	"[sig-network] Services should be able to change the type from ClusterIP to ExternalName ",
	"[sig-network] Services should find a service from listing all namespaces ",
	// exec, logs, attach, port-forward, proxy
	"[sig-node] Pods should support remote command execution over websockets ",
	"[sig-node] Pods should support retrieving logs from the container over websockets ",
	"[sig-cli] Kubectl logs logs should be able to retrieve and filter logs ",
	"[sig-node] Container Lifecycle Hook when create a pod with lifecycle hook should execute poststart exec hook properly ",
	"[sig-cli] Kubectl client Kubectl run pod should create a pod from an image when restart is Never ",
	"[sig-cli] Kubectl Port forwarding With a server listening on localhost should support forwarding over websockets",
	"[sig-cli] Kubectl Port forwarding With a server listening on 0.0.0.0 that expects a client request should support a client that connects, sends DATA, and disconnects",
	"[sig-network] Proxy version v1 A set of valid responses are returned for both pod and service ProxyWithPath ",
	// ConfigMap, Secret, projected and downward API volumes, env
	"[sig-storage] ConfigMap should be consumable from pods in volume [Conformance]",
	"[sig-storage] ConfigMap updates should be reflected in volume ",
	"[sig-storage] Secrets should be consumable from pods in volume [Conformance]",
	"[sig-storage] Projected combined should project all components that make up the projection API ",
	"[sig-storage] Projected secret should be consumable in multiple volumes in a pod ",
	"[sig-storage] Projected configMap should be consumable from pods in volume with mappings [Conformance]",
	"[sig-storage] Downward API volume should provide podname only ",
	"[sig-node] ConfigMap should be consumable via environment variable ",
	"[sig-node] Secrets should be consumable from pods in env vars ",
	"[sig-storage] EmptyDir volumes should support (root,0644,tmpfs) ",
	// scheduler
	"[sig-scheduling] SchedulerPredicates validates that NodeSelector is respected if matching ",
	"[sig-scheduling] SchedulerPredicates validates resource limits of pods that are allowed to run ",
	"[sig-scheduling] SchedulerPreemption validates basic preemption works ",
}

// sliceFocus is the ginkgo --focus of the slice: any of sliceSpecs.
func sliceFocus() string {
	var parts []string
	for _, s := range sliceSpecs {
		parts = append(parts, regexp.QuoteMeta(s))
	}
	return strings.Join(parts, "|")
}

// needCluster skips the test unless it can boot a harness cluster (root,
// $KEDGE_BIN), before anything is built or written.
func needCluster(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("conformance runs a cluster of harness nodes: it needs root (make conformance)")
	}
	if os.Getenv("KEDGE_BIN") == "" {
		t.Skip("KEDGE_BIN is not set (make conformance)")
	}
}

// outDir is where a run keeps its reports, logs and kubeconfig:
// $KEDGE_CONFORMANCE_OUT, default bin/conformance/results/<test>-<time>.
func outDir(t *testing.T) string {
	dir := os.Getenv("KEDGE_CONFORMANCE_OUT")
	if dir == "" {
		dir = filepath.Join("../../bin/conformance/results", t.Name()+"-"+time.Now().Format("20060102-150405"))
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// report writes the summary to out/summary.txt, logs it, and fails the test
// if a spec failed.
func report(t *testing.T, out string, r result) {
	t.Helper()
	s := r.Summary()
	if err := os.WriteFile(filepath.Join(out, "summary.txt"), []byte(s+"\n"), 0o644); err != nil {
		t.Error(err)
	}
	t.Logf("conformance: %s\nreports and logs in %s", s, out)
	if len(r.failed) > 0 {
		t.Errorf("%d specs failed", len(r.failed))
	}
}

// TestConformance runs every [Conformance] spec of the suite kedge's
// Kubernetes version ships: the parallel ones with ginkgo --procs, then
// the [Serial] ones alone (make conformance; ~1 h on 2 cores). With
// KEDGE_CONFORMANCE_FOCUS (a ginkgo --focus regular expression) it runs only
// the [Conformance] specs that match, in the same two phases.
func TestConformance(t *testing.T) {
	needCluster(t)
	tools := toolsDir(t)
	out := outDir(t)
	t.Setenv("KEDGE_E2E_LOGS", filepath.Join(out, "nodes"))
	focus := os.Getenv("KEDGE_CONFORMANCE_FOCUS")
	matches := func(string) bool { return true }
	if focus != "" {
		re, err := regexp.Compile(focus)
		if err != nil {
			t.Fatalf("KEDGE_CONFORMANCE_FOCUS=%q: %v", focus, err)
		}
		matches = re.MatchString
	}
	cl := startCluster(t, tools, out)
	var total result
	total.add(cl.run(t, tools, phase{name: "conformance-parallel", labels: parallelLabels, focus: focus, procs: procs(t),
		timeout: 3 * time.Hour, selects: func(n string) bool { return isConformance(n) && !isSerial(n) && matches(n) }}))
	total.add(cl.run(t, tools, phase{name: "conformance-serial", labels: serialLabels, focus: focus, procs: 1,
		timeout: 2 * time.Hour, selects: func(n string) bool { return isConformance(n) && isSerial(n) && matches(n) }}))
	report(t, out, total)
}

// TestConformanceSlice runs sliceSpecs (make conformance-slice): a few
// minutes, meant for CI.
func TestConformanceSlice(t *testing.T) {
	needCluster(t)
	tools := toolsDir(t)
	out := outDir(t)
	t.Setenv("KEDGE_E2E_LOGS", filepath.Join(out, "nodes"))
	cl := startCluster(t, tools, out)
	focus := sliceFocus()
	re := regexp.MustCompile(focus)
	r := cl.run(t, tools, phase{name: "slice", focus: focus, procs: procs(t), timeout: 20 * time.Minute, selects: re.MatchString})
	if n := len(r.passed) + len(r.failed) + len(r.skipped); n < len(sliceSpecs) {
		t.Errorf("the slice ran %d specs, sliceSpecs names %d: a spec was renamed or removed upstream", n, len(sliceSpecs))
	}
	report(t, out, r)
}
