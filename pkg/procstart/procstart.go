// Package procstart tells when the current process was exec'd, so that
// start-up times logged by kedge include the Go runtime's and the package
// initialisers' time, not only main's.
//
//	began := procstart.Time()
package procstart

import (
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times; 100 on every
// Linux architecture kedge supports.
const clockTicks = 100

// Time returns the wall-clock time the kernel started this process, or now
// when /proc cannot tell.
func Time() time.Time {
	now := time.Now()
	stat, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return now
	}
	// Field 22 (starttime) counts after the command name, which is in
	// parentheses and may contain spaces.
	s := string(stat)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 20 {
		return now
	}
	ticks, err := strconv.ParseInt(fields[19], 10, 64)
	if err != nil {
		return now
	}
	// /proc/uptime has centisecond precision (btime in /proc/stat only whole seconds).
	raw, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return now
	}
	up, err := strconv.ParseFloat(strings.Fields(string(raw))[0], 64)
	if err != nil {
		return now
	}
	age := time.Duration((up - float64(ticks)/clockTicks) * float64(time.Second))
	if age < 0 || age > time.Hour {
		return now
	}
	return now.Add(-age)
}
