package image

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// daemon is a dockerd of the test's own: its own data root, exec root and
// socket under dir, and no changes to the host's firewall or forwarding
// (--iptables=false, --ip-forward=false): dockerd's defaults would set the
// host's FORWARD policy to DROP, which breaks the network namespaces of
// every other test on the machine. No default bridge either: the nodes
// share a user-defined network, whose bridge needs no NAT between them.
type daemon struct {
	t      *testing.T
	dir    string
	cgroup string // the containers' --cgroup-parent
	cmd    *exec.Cmd
	log    *os.File
}

// startDaemon starts dockerd and waits for its API; t.Cleanup stops it and
// removes everything it made (containers, volumes, images, mounts, its
// cgroups).
func startDaemon(t *testing.T) *daemon {
	t.Helper()
	// A short path: containerd's sockets live under the exec root, and a
	// unix socket path has at most 107 bytes.
	dir, err := os.MkdirTemp("/tmp", "kedge-img-")
	if err != nil {
		t.Fatal(err)
	}
	d := &daemon{t: t, dir: dir, cgroup: "/" + filepath.Base(dir)}
	d.log, err = os.Create(filepath.Join(dir, "dockerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	d.cmd = exec.Command("dockerd",
		"--data-root", filepath.Join(dir, "root"), "--exec-root", filepath.Join(dir, "exec"),
		"--pidfile", filepath.Join(dir, "dockerd.pid"), "--host", "unix://"+d.socket(),
		"--iptables=false", "--ip6tables=false", "--ip-forward=false", "--ip-masq=false",
		"--bridge=none", "--userland-proxy=false",
		"--exec-opt", "native.cgroupdriver=cgroupfs", "--cgroup-parent", d.cgroup)
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("dockerd: %v", err)
	}
	t.Cleanup(d.stop)
	deadline := time.Now().Add(time.Minute)
	for {
		if _, err := d.docker("version", "--format", "{{.Server.Version}}"); err == nil {
			return d
		}
		if time.Now().After(deadline) {
			t.Fatalf("dockerd did not answer in a minute:\n%s", d.logTail())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (d *daemon) socket() string { return filepath.Join(d.dir, "docker.sock") }

// env is the environment of a docker client of this daemon.
func (d *daemon) env() []string { return append(os.Environ(), "DOCKER_HOST=unix://"+d.socket()) }

// docker runs the docker client and returns its trimmed output.
func (d *daemon) docker(args ...string) (string, error) {
	return d.dockerEnv(nil, args...)
}

// dockerEnv runs the docker client with env added to its environment.
func (d *daemon) dockerEnv(env []string, args ...string) (string, error) {
	cmd := exec.Command("docker", args...)
	cmd.Env = append(d.env(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return strings.TrimSpace(string(out)), fmt.Errorf("docker %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(string(out)), nil
}

// must runs the docker client and fails the test on an error.
func (d *daemon) must(args ...string) string {
	d.t.Helper()
	out, err := d.docker(args...)
	if err != nil {
		d.t.Fatal(err)
	}
	return out
}

// logs is a container's log (kedge logs to stderr, which docker logs
// replays on its stderr).
func (d *daemon) logs(name string, lines int) string {
	cmd := exec.Command("docker", "logs", "--tail", fmt.Sprint(lines), name)
	cmd.Env = d.env()
	out, _ := cmd.CombinedOutput()
	return string(out)
}

func (d *daemon) logTail() string {
	b, _ := os.ReadFile(d.log.Name())
	return tail(string(b), 30)
}

// stop removes the containers (and their volumes), stops dockerd, unmounts
// what is left under dir, removes dir and the containers' cgroup parent.
func (d *daemon) stop() {
	t := d.t
	if ids, err := d.docker("ps", "-aq"); err == nil && ids != "" {
		if _, err := d.docker(append([]string{"rm", "-f", "-v"}, strings.Fields(ids)...)...); err != nil {
			t.Error(err)
		}
	}
	// dockerd keeps a user-defined network's bridge (br-<id>) when it
	// stops: remove the networks first, and check that their bridges went.
	var bridges []string
	if ids, err := d.docker("network", "ls", "-q", "--no-trunc", "--filter", "type=custom"); err == nil && ids != "" {
		for _, id := range strings.Fields(ids) {
			bridges = append(bridges, "br-"+id[:12])
		}
		if _, err := d.docker(append([]string{"network", "rm"}, strings.Fields(ids)...)...); err != nil {
			t.Error(err)
		}
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- d.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Errorf("dockerd did not stop in 30 s: killed\n%s", d.logTail())
		_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
	d.log.Close()
	for _, b := range bridges {
		if _, err := os.Stat("/sys/class/net/" + b); err == nil {
			t.Errorf("bridge %s is still there after docker network rm", b)
		}
	}
	if os.Getenv("KEDGE_IMAGE_TEST_KEEP") != "" {
		t.Logf("kept %s (KEDGE_IMAGE_TEST_KEEP)", d.dir)
	}
	// dockerd leaves its netns/default bind mount behind.
	if mounts, err := mountinfo.GetMounts(mountinfo.PrefixFilter(d.dir)); err == nil {
		sort.Slice(mounts, func(i, j int) bool { return len(mounts[i].Mountpoint) > len(mounts[j].Mountpoint) })
		for _, m := range mounts {
			if err := unix.Unmount(m.Mountpoint, unix.MNT_DETACH); err != nil {
				t.Errorf("unmount %s: %v", m.Mountpoint, err)
			}
		}
	}
	if os.Getenv("KEDGE_IMAGE_TEST_KEEP") == "" {
		if err := os.RemoveAll(d.dir); err != nil {
			t.Error(err)
		}
	}
	if err := removeCgroup(d.cgroup); err != nil {
		t.Error(err)
	}
}

// removeCgroup removes a cgroup and everything below it, in every
// hierarchy, retrying while the last processes exit.
func removeCgroup(root string) error {
	mounts, err := mountinfo.GetMounts(func(m *mountinfo.Info) (bool, bool) {
		return m.FSType != "cgroup" && m.FSType != "cgroup2", false
	})
	if err != nil {
		return err
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		var dirs []string
		for _, m := range mounts {
			_ = filepath.WalkDir(filepath.Join(m.Mountpoint, root), func(p string, e fs.DirEntry, err error) error {
				if err == nil && e.IsDir() {
					dirs = append(dirs, p)
				}
				return nil
			})
		}
		sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
		var errs []error
		for _, p := range dirs {
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
		}
		if len(errs) == 0 || time.Now().After(deadline) {
			return errors.Join(errs...)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
