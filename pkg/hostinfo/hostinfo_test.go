package hostinfo

import "testing"

func TestCapEffHas(t *testing.T) {
	cases := []struct {
		status string
		want   bool
	}{
		{"Name:\tx\nCapEff:\t000001ffffffffff\n", true},
		{"CapEff:\t000001fffeffffff\n", false}, // bit 24 cleared: no CAP_SYS_RESOURCE
		{"CapEff:\tzz\n", false},
		{"Name:\tx\n", false},
	}
	for _, tc := range cases {
		if got := capEffHas(tc.status, capSysResource); got != tc.want {
			t.Errorf("capEffHas(%q) = %v, want %v", tc.status, got, tc.want)
		}
	}
}

func TestCgroupDriver(t *testing.T) {
	if (Host{Systemd: true}).CgroupDriver() != "systemd" || (Host{}).CgroupDriver() != "cgroupfs" {
		t.Fatal("CgroupDriver")
	}
}

func TestDetectOnThisHost(t *testing.T) {
	h := Detect()
	t.Logf("this host: %+v driver=%s", h, h.CgroupDriver())
	if isCgroup2("/sys/fs/cgroup") == h.CgroupV1 {
		t.Fatal("CgroupV1 disagrees with the statfs of /sys/fs/cgroup")
	}
}
