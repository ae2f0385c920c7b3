package netpol

import (
	"strings"
	"testing"
)

// TestFamilies: the service CIDR decides the families; IPv6 and a missing
// or bad CIDR are refused with the flag to use.
func TestFamilies(t *testing.T) {
	v4, v6, cidrs, err := families("10.43.0.0/16")
	if err != nil || !v4 || v6 || len(cidrs) != 1 || cidrs[0] != "10.43.0.0/16" {
		t.Fatalf("10.43.0.0/16: %v %v %v %v", v4, v6, cidrs, err)
	}
	for in, want := range map[string]string{
		"":                           "no service CIDR",
		"10.43.0.0":                  "10.43.0.0",
		"fd00:43::/112":              "--disable network-policy",
		"10.43.0.0/16,fd00:43::/112": "IPv4 only",
	} {
		if _, _, _, err := families(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("families(%q): %v, want an error with %q", in, err, want)
		}
	}
}
