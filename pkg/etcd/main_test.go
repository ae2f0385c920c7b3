package etcd

import (
	"os"
	"testing"
)

// TestMain lets the test binary be CheckDataInChild's child:
// <test binary> etcd check-data DIR.
func TestMain(m *testing.M) {
	if len(os.Args) == 4 && os.Args[1] == CheckDataArgs[0] && os.Args[2] == CheckDataArgs[1] {
		os.Exit(CheckMain(os.Args[3], os.Stderr))
	}
	os.Exit(m.Run())
}
