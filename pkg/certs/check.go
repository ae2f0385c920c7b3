package certs

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"text/tabwriter"
	"time"
)

// WarnBefore is how close to its expiry `kedge certificate check` fails
// on a certificate.
const WarnBefore = 30 * 24 * time.Hour

// DaysLeft is the whole days from now until notAfter (negative once expired).
func DaysLeft(notAfter, now time.Time) int {
	return int(math.Floor(notAfter.Sub(now).Hours() / 24))
}

// Expiring returns the certificates that expire within WarnBefore of now.
func Expiring(certs []Cert, now time.Time) []Cert {
	var out []Cert
	for _, c := range certs {
		if c.NotAfter.Sub(now) < WarnBefore {
			out = append(out, c)
		}
	}
	return out
}

// checkEntry is one line of `kedge certificate check --output json`.
type checkEntry struct {
	Cert
	DaysLeft    int     `json:"daysLeft"`
	SecondsLeft float64 `json:"secondsLeft"`
}

// WriteTable writes certs as an aligned table: file, subject, issuer,
// not-after and days left.
func WriteTable(w io.Writer, certs []Cert, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FILE\tSUBJECT\tISSUER\tNOT AFTER\tDAYS LEFT")
	for _, c := range certs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\n", c.Label(), c.Subject, c.Issuer, c.NotAfter.Format(time.RFC3339), DaysLeft(c.NotAfter, now))
	}
	return tw.Flush()
}

// WriteJSON writes certs as a JSON array, with days and seconds left.
func WriteJSON(w io.Writer, certs []Cert, now time.Time) error {
	out := make([]checkEntry, 0, len(certs))
	for _, c := range certs {
		out = append(out, checkEntry{Cert: c, DaysLeft: DaysLeft(c.NotAfter, now), SecondsLeft: c.NotAfter.Sub(now).Seconds()})
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
