package main

import (
	"reflect"
	"strings"
	"testing"

	"github.com/kedge-io/kedge/bench"
)

func TestParseScaleSteps(t *testing.T) {
	got, err := parseScaleSteps(defaultScaleSteps)
	want := []bench.ScaleStep{{Nodes: 100, Pods: 0}, {Nodes: 100, Pods: 1000}, {Nodes: 100, Pods: 3000}, {Nodes: 500, Pods: 10000}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("parseScaleSteps(%q) = %v, %v; want %v", defaultScaleSteps, got, err, want)
	}
	for _, bad := range []string{"", "100", "0:10", "10:-1", "x:1", "10:100,10:50", "10:100,5:200", "10:100,10:100"} {
		if _, err := parseScaleSteps(bad); err == nil || !strings.Contains(err.Error(), "NODES") && !strings.Contains(err.Error(), "grow") {
			t.Errorf("parseScaleSteps(%q): error %v, want one naming the form or the order", bad, err)
		}
	}
}

func TestScaleIsOptIn(t *testing.T) {
	o, err := parseFlags(nil)
	if err != nil {
		t.Fatal(err)
	}
	if o.only["scale"] {
		t.Error("the default parts include scale; it must run only with -only scale")
	}
	o, err = parseFlags([]string{"-only", "scale", "-quick"})
	if err != nil || !o.only["scale"] || len(o.scale.Steps) != 4 || o.scale.Steps[3].Pods != 600 {
		t.Errorf("-only scale -quick: only %v, steps %v, err %v", o.only, o.scale.Steps, err)
	}
}
