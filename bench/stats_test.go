package bench

import (
	"testing"
	"time"
)

func TestSummarize(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want Summary
	}{
		{nil, Summary{}},
		{[]float64{7}, Summary{N: 1, Median: 7, Min: 7, Max: 7}},
		{[]float64{3, 1, 2}, Summary{N: 3, Median: 2, Min: 1, Max: 3}},
		{[]float64{4, 1, 3, 10}, Summary{N: 4, Median: 3.5, Min: 1, Max: 10}},
		{[]float64{5, 5, 1, 9, 5}, Summary{N: 5, Median: 5, Min: 1, Max: 9}},
	} {
		in := append([]float64(nil), c.in...)
		if got := Summarize(c.in); got != c.want {
			t.Errorf("Summarize(%v) = %+v, want %+v", c.in, got, c.want)
		}
		for i := range in {
			if in[i] != c.in[i] {
				t.Errorf("Summarize sorted its input: %v", c.in)
			}
		}
	}
}

func TestPercentile(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- { // 100 ms … 1 ms, unsorted
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	for p, want := range map[float64]time.Duration{50: 50 * time.Millisecond, 99: 99 * time.Millisecond, 100: 100 * time.Millisecond, 1: time.Millisecond, 0.1: time.Millisecond} {
		if got := Percentile(ds, p); got != want {
			t.Errorf("p%v = %v, want %v", p, got, want)
		}
	}
	// Nearest rank: p99 of 10 samples is the largest.
	if got := Percentile(ds[90:], 99); got != 10*time.Millisecond {
		t.Errorf("p99 of 10 = %v, want 10ms", got)
	}
	if got := Percentile(nil, 50); got != 0 {
		t.Errorf("p50 of nothing = %v", got)
	}
}

func TestTable(t *testing.T) {
	var r Results
	api := Metric{Name: "exec → API ready", Unit: "s", Decimals: 2}
	heap := Metric{Name: "heap", Unit: "MiB"}
	procs := Metric{Name: "processes"}
	r.Declare(api, "")
	r.Declare(heap, "n/a")
	for _, v := range []float64{2.5, 2.25, 3} {
		r.Add(api, "kedge", v)
	}
	for _, v := range []float64{5, 4, 6} {
		r.Add(api, "baseline", v)
	}
	r.Add(heap, "kedge", 200.4)
	r.Add(procs, "kedge", 2)
	r.Add(procs, "kedge", 2)
	r.Add(procs, "baseline", 11)
	r.Declare(api, "") // declaring again keeps the values and the order
	want := "| metric | kedge | baseline | ratio kedge/baseline |\n" +
		"|---|---:|---:|---:|\n" +
		"| exec → API ready | 2.50 s (2.25–3.00) | 5.00 s (4.00–6.00) | 0.50 |\n" +
		"| heap | 200 MiB | n/a | – |\n" +
		"| processes | 2 | 11 | 0.18 |\n"
	if got := r.Table([2]string{"kedge", "baseline"}); got != want {
		t.Errorf("table:\n%s\nwant:\n%s", got, want)
	}
	if len(r.Rows()) != 3 || r.Rows()[0].Name != api.Name {
		t.Errorf("rows: %v", r.Rows())
	}
}
