package cli

import (
	"strings"
	"testing"
)

func TestBytesFlag(t *testing.T) {
	for in, want := range map[string]uint64{"256Mi": 256 << 20, "1Gi": 1 << 30, "1G": 1e9, "0": 0, "4096": 4096} {
		var b bytesFlag
		if err := b.Set(in); err != nil || uint64(b) != want {
			t.Errorf("Set(%q) = %d, %v; want %d", in, b, err, want)
		}
	}
	for _, in := range []string{"", "-1Mi", "lots", "1.5"} {
		var b bytesFlag
		if err := b.Set(in); err == nil || !strings.Contains(err.Error(), "256Mi") {
			t.Errorf("Set(%q) = %v, want an error with an example", in, err)
		}
	}
	b := bytesFlag(256 << 20)
	if b.String() != "256Mi" {
		t.Errorf("String() = %q", b.String())
	}
}
