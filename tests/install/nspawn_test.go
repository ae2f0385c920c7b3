package install

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Bridge is the host's bridge between the containers; BridgeIP is the
// host's address on it, where the test serves the release files.
const (
	Bridge   = "kedge-it0"
	BridgeIP = "10.77.0.1"
)

// rebootExit is systemd-nspawn's exit status when the container rebooted.
const rebootExit = 133

// container is one node: systemd as PID 1 in systemd-nspawn, booting a copy
// of the cached rootfs, with its own address on Bridge.
type container struct {
	t      *testing.T
	name   string
	ip     string
	dir    string // its rootfs
	logDir string

	cgroups []string      // its own cgroups and their parents, to remove
	v1      []string      // the v1 controller hierarchies (their mount names)
	leaders chan int      // the PID of each boot's systemd, as seen from the host
	leader  int           // the current boot's
	done    chan struct{} // closed when systemd-nspawn exits for good
	err     error         // why, set before done is closed
}

// newContainer copies rootfs for name and configures its network.
func newContainer(t *testing.T, rootfs, workDir, name, ip string) *container {
	c := &container{t: t, name: name, ip: ip, dir: filepath.Join(workDir, name), logDir: workDir,
		leaders: make(chan int, 4), done: make(chan struct{})}
	os.RemoveAll(c.dir) // a previous run's (KEDGE_INSTALL_TEST_LOGS)
	if out, err := exec.Command("cp", "-a", "--reflink=auto", rootfs, c.dir).CombinedOutput(); err != nil {
		t.Fatalf("copy the rootfs for %s: %v\n%s", name, err, out)
	}
	files := map[string]string{
		"etc/hostname": name + "\n",
		"etc/hosts":    "127.0.0.1 localhost\n" + ip + " " + name + "\n",
		// Not systemd-networkd: with /sys writable it waits for a udev that
		// a container does not run.
		"etc/systemd/system/kit-net.service": "[Unit]\nDescription=host0 on the test bridge\nDefaultDependencies=no\n" +
			"Before=network.target network-online.target\n\n[Service]\nType=oneshot\nRemainAfterExit=yes\n" +
			"ExecStart=/sbin/ip link set host0 up\nExecStart=/sbin/ip addr add " + ip + "/24 dev host0\n" +
			"ExecStart=/sbin/ip route add default via " + BridgeIP + "\n",
		"etc/resolv.conf": "nameserver " + BridgeIP + "\n", // nothing answers: the test needs no name lookups
	}
	for p, content := range files {
		full := filepath.Join(c.dir, p)
		os.Remove(full) // a symlink in the rootfs, at times
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, target := range []string{"multi-user.target", "network-online.target"} {
		wants := filepath.Join(c.dir, "etc/systemd/system", target+".wants")
		os.MkdirAll(wants, 0o755)
		if err := os.Symlink("../kit-net.service", filepath.Join(wants, "kit-net.service")); err != nil && !errors.Is(err, os.ErrExist) {
			t.Fatal(err)
		}
	}
	return c
}

// boot starts systemd-nspawn and restarts it whenever the container
// reboots, until it powers off; it waits for the first boot.
func (c *container) boot() {
	logf, err := os.OpenFile(filepath.Join(c.logDir, c.name+".console.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		c.t.Fatal(err)
	}
	procs := c.makeCgroups()
	go func() {
		defer close(c.done)
		defer c.removeCgroups()
		defer logf.Close()
		for {
			// Each container's systemd manages a cgroup tree of its own:
			// systemd-nspawn --keep-unit boots it in the cgroups it runs in.
			cmd := exec.Command("sh", "-c", `for f in $KIT_CGROUPS; do echo $$ >"$f" || exit 1; done; exec "$@"`, "sh", "systemd-nspawn", "--quiet", "--keep-unit", "--register=no", "--boot",
				"--directory", c.dir, "--machine", c.name, "--network-bridge", Bridge,
				"--capability=all", "--console=passive", "--bind=/dev/kmsg")
			// The host runs cgroup v1 (systemd's hybrid layout inside);
			// kedge's kubelet and kube-proxy write /proc/sys.
			cmd.Env = append(os.Environ(), "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=0", "SYSTEMD_NSPAWN_API_VFS_WRITABLE=1",
				"KIT_CGROUPS="+strings.Join(procs, " "))
			cmd.Stdout, cmd.Stderr = logf, logf
			if err := cmd.Start(); err != nil {
				c.err = err
				return
			}
			go func(pid int) {
				if l, err := waitLeader(pid, 30*time.Second); err == nil {
					c.leaders <- l
				}
			}(cmd.Process.Pid)
			err := cmd.Wait()
			var exit *exec.ExitError
			if errors.As(err, &exit) && exit.ExitCode() == rebootExit {
				continue
			}
			c.err = fmt.Errorf("systemd-nspawn %s exited: %v", c.name, err)
			return
		}
	}()
	c.waitBoot()
}

// waitBoot waits for the next boot's systemd and for the system to be up.
func (c *container) waitBoot() {
	c.t.Helper()
	select {
	case c.leader = <-c.leaders:
		// systemd-nspawn mounts the v1 controller hierarchies read-only
		// (as its own cgroup namespace's root); the kubelet makes its pods'
		// cgroups there. Made writable before kedge starts, late in boot
		// (and kedge would be restarted anyway).
		for _, m := range c.v1 {
			if out, err := exec.Command("nsenter", "-t", strconv.Itoa(c.leader), "-m",
				"mount", "-o", "remount,bind,rw", "/sys/fs/cgroup/"+m).CombinedOutput(); err != nil {
				c.t.Fatalf("%s: make /sys/fs/cgroup/%s writable: %v\n%s", c.name, m, err, out)
			}
		}
	case <-c.done:
		c.t.Fatalf("%s: %v (console: %s)", c.name, c.err, c.logDir)
	case <-time.After(60 * time.Second):
		c.t.Fatalf("%s: systemd did not start within 60 s", c.name)
	}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		out, _ := c.run(context.Background(), nil, "systemctl", "is-system-running", "--wait")
		state := strings.TrimSpace(out)
		if state == "running" || state == "degraded" {
			if state == "degraded" {
				failed, _ := c.run(context.Background(), nil, "systemctl", "--failed", "--no-legend")
				c.t.Logf("%s booted degraded: %s", c.name, failed)
			}
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s: system not up after 3 min: %q", c.name, state)
		}
		time.Sleep(time.Second)
	}
}

// waitLeader finds systemd-nspawn's container init: the process named
// systemd below it.
func waitLeader(nspawn int, timeout time.Duration) (int, error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		for _, child := range children(nspawn) {
			for _, p := range append([]int{child}, children(child)...) {
				if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", p)); strings.TrimSpace(string(comm)) == "systemd" {
					return p, nil
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return 0, fmt.Errorf("no systemd below systemd-nspawn %d", nspawn)
}

// children are the PIDs whose parent is pid.
func children(pid int) []int {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return nil
	}
	var out []int
	for _, f := range strings.Fields(string(raw)) {
		if n, err := strconv.Atoi(f); err == nil {
			out = append(out, n)
		}
	}
	return out
}

// containerPath is PATH inside, as a root login has it.
const containerPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// run runs argv inside the container (all of its namespaces) with env
// besides PATH and HOME, and returns its combined output.
func (c *container) run(ctx context.Context, env []string, argv ...string) (string, error) {
	args := append([]string{"-t", strconv.Itoa(c.leader), "-a", "--"}, argv...)
	cmd := exec.CommandContext(ctx, "nsenter", args...)
	cmd.Env = append([]string{containerPath, "HOME=/root", "LANG=C.UTF-8"}, env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// sh runs a shell script inside and fails the test if it fails.
func (c *container) sh(script string) string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	out, err := c.run(ctx, nil, "bash", "-o", "pipefail", "-c", script)
	if err != nil {
		c.t.Fatalf("%s: %s: %v\n%s", c.name, script, err, tail(out, 40))
	}
	return strings.TrimSpace(out)
}

// reboot reboots the container and waits for it to be up again.
func (c *container) reboot() {
	c.t.Helper()
	c.run(context.Background(), nil, "systemctl", "reboot")
	c.waitBoot()
}

// stop powers the container off (killing its init if it does not stop).
func (c *container) stop() {
	select {
	case <-c.done:
		return
	default:
	}
	c.run(context.Background(), nil, "systemctl", "poweroff")
	select {
	case <-c.done:
	case <-time.After(60 * time.Second):
		syscall.Kill(c.leader, syscall.SIGKILL) // PID 1 of its namespace: the rest goes with it
		<-c.done
	}
}

// makeCgroups makes the container's cgroups, below this process's own in
// each hierarchy it is in (the host runs cgroup v1: one per controller, and
// systemd's), and returns their cgroup.procs files.
func (c *container) makeCgroups() []string {
	raw, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		c.t.Fatal(err)
	}
	var procs []string
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		mount := strings.TrimPrefix(parts[1], "name=")
		if mount == "" {
			mount = "unified"
		}
		dir := filepath.Join("/sys/fs/cgroup", mount, parts[2])
		if _, err := os.Stat(dir); err != nil {
			continue
		}
		for _, el := range []string{"kedge-install-test", c.name} {
			parent := dir
			dir = filepath.Join(dir, el)
			if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
				c.t.Fatalf("cgroup %s: %v", dir, err)
			}
			if mount == "cpuset" { // a new cpuset has no CPUs and no memory nodes
				for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
					if v, err := os.ReadFile(filepath.Join(parent, f)); err == nil {
						os.WriteFile(filepath.Join(dir, f), v, 0o644)
					}
				}
			}
			c.cgroups = append(c.cgroups, dir)
		}
		procs = append(procs, filepath.Join(dir, "cgroup.procs"))
		if mount != "systemd" && mount != "unified" {
			c.v1 = append(c.v1, mount)
		}
	}
	return procs
}

// removeCgroups removes what makeCgroups made, once the container is gone:
// deepest first, leaving a parent another container still uses.
func (c *container) removeCgroups() {
	for i := len(c.cgroups) - 1; i >= 0; i-- {
		removeTree(c.cgroups[i])
	}
}

// removeTree removes an empty cgroup and the empty ones below it (left by
// the container's systemd when it was killed).
func removeTree(dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.IsDir() {
			removeTree(filepath.Join(dir, e.Name()))
		}
	}
	syscall.Rmdir(dir)
}
