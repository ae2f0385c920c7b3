package bench

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"time"
)

// Summary is the median and range of a metric's runs.
type Summary struct {
	N                int
	Median, Min, Max float64
}

// Summarize returns the median (the mean of the two middle values for an
// even count), min and max of xs. An empty xs gives N == 0.
func Summarize(xs []float64) Summary {
	if len(xs) == 0 {
		return Summary{}
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	mid := len(s) / 2
	med := s[mid]
	if len(s)%2 == 0 {
		med = (s[mid-1] + s[mid]) / 2
	}
	return Summary{N: len(s), Median: med, Min: s[0], Max: s[len(s)-1]}
}

// Percentile returns the p-th percentile (0 < p <= 100) of ds by the
// nearest-rank method: the smallest value at least p% of the samples are
// less than or equal to. It returns 0 for no samples.
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	if rank < 1 {
		rank = 1
	}
	if rank > len(s) {
		rank = len(s)
	}
	return s[rank-1]
}

// Metric describes one row of the table.
type Metric struct {
	Name     string // e.g. "exec → API ready"
	Unit     string // printed after the values: "s", "MiB", "ops/s", "ms"
	Decimals int    // digits after the point
}

// Row is one metric and its runs per setup ("kedge", "baseline").
type Row struct {
	Metric
	Values map[string][]float64
	Note   string // replaces a missing value, e.g. "n/a (one process)"
}

// Results collects the rows in the order they were first recorded.
type Results struct {
	rows  []*Row
	index map[string]*Row
}

// Add records one run's value of a metric for a setup.
func (r *Results) Add(m Metric, setup string, v float64) {
	row := r.row(m)
	row.Values[setup] = append(row.Values[setup], v)
}

// Declare adds the row without a value, so that rows keep the declared
// order; note (if not "") is shown where a setup has no value.
func (r *Results) Declare(m Metric, note string) {
	if note != "" || r.index[m.Name] == nil {
		r.row(m).Note = note
	}
}

func (r *Results) row(m Metric) *Row {
	if r.index == nil {
		r.index = map[string]*Row{}
	}
	row, ok := r.index[m.Name]
	if !ok {
		row = &Row{Metric: m, Values: map[string][]float64{}}
		r.index[m.Name] = row
		r.rows = append(r.rows, row)
	}
	return row
}

// Rows returns the rows in order.
func (r *Results) Rows() []*Row { return r.rows }

// Table renders the results as one Markdown table: metric, a column per
// setup with "median (min–max)" and the ratio of the first setup's median
// to the second's. A missing value is "–" (or the row's note).
func (r *Results) Table(setups [2]string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "| metric | %s | %s | ratio %s/%s |\n", setups[0], setups[1], setups[0], setups[1])
	b.WriteString("|---|---:|---:|---:|\n")
	for _, row := range r.rows {
		a, c := Summarize(row.Values[setups[0]]), Summarize(row.Values[setups[1]])
		ratio := "–"
		if a.N > 0 && c.N > 0 && c.Median != 0 {
			ratio = fmt.Sprintf("%.2f", a.Median/c.Median)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", row.Name, row.cell(a), row.cell(c), ratio)
	}
	return b.String()
}

func (row *Row) cell(s Summary) string {
	if s.N == 0 {
		if row.Note != "" {
			return row.Note
		}
		return "–"
	}
	f := func(v float64) string { return strconvFloat(v, row.Decimals) }
	unit := ""
	if row.Unit != "" {
		unit = " " + row.Unit
	}
	if s.N == 1 || s.Min == s.Max {
		return f(s.Median) + unit
	}
	return fmt.Sprintf("%s%s (%s–%s)", f(s.Median), unit, f(s.Min), f(s.Max))
}

func strconvFloat(v float64, decimals int) string {
	return fmt.Sprintf("%.*f", decimals, v)
}
