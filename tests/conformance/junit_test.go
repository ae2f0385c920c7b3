package conformance

import (
	"regexp"
	"strings"
	"testing"
)

// TestReadJUnit reads a report ginkgo wrote for the suite (trimmed, one
// spec made a failure): specs the phase does not select are not counted,
// the label list ginkgo appends is not part of a name, a failure is listed.
func TestReadJUnit(t *testing.T) {
	p := phase{selects: func(n string) bool { return isConformance(n) && isSerial(n) }}
	r, err := readJUnit("testdata/junit-ginkgo.xml", p)
	if err != nil {
		t.Fatal(err)
	}
	want := "[sig-scheduling] SchedulerPredicates [Serial] validates that NodeSelector is respected if not matching [Conformance]"
	if len(r.passed) != 1 || len(r.skipped) != 0 || len(r.failed) != 1 || r.failed[0] != want {
		t.Fatalf("passed %q, failed %q, skipped %q", r.passed, r.failed, r.skipped)
	}
	if s := r.Summary(); !strings.HasPrefix(s, "1 passed, 1 failed, 0 skipped in 0s\nFAILED: "+want) {
		t.Errorf("summary %q", s)
	}
	// Every spec, the skipped ones included, when the phase selects all.
	r, err = readJUnit("testdata/junit-ginkgo.xml", phase{selects: func(string) bool { return true }})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.passed) != 1 || len(r.skipped) != 2 || len(r.failed) != 1 {
		t.Fatalf("all: passed %d, failed %d, skipped %d", len(r.passed), len(r.failed), len(r.skipped))
	}
}

// TestSliceFocus: the slice's expression matches each of its specs and
// not another.
func TestSliceFocus(t *testing.T) {
	re := regexp.MustCompile(sliceFocus())
	for _, s := range sliceSpecs {
		if !re.MatchString(s + "[Conformance]") {
			t.Errorf("focus does not match %q", s)
		}
	}
	if re.MatchString("[sig-network] DNS should provide DNS for the cluster [Provider:GCE]") {
		t.Error("focus matches the GCE DNS spec")
	}
}
