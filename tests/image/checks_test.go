package image

import (
	"archive/tar"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// checkContents reads the image's file system: kedge and the programs it
// runs are there, no shell or package manager is.
func checkContents(t *testing.T, d *daemon) {
	t.Helper()
	id := d.must("create", imageName)
	defer d.docker("rm", id)
	cmd := exec.Command("docker", "export", id)
	cmd.Env = d.env()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	files := map[string]bool{}
	tr := tar.NewReader(out)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		files[strings.TrimSuffix(h.Name, "/")] = true
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"usr/bin/kedge", "usr/bin/kubectl", "usr/sbin/iptables", "usr/sbin/iptables-restore",
		"usr/sbin/xtables-nft-multi", "usr/sbin/nft", "usr/bin/mount", "etc/ssl/certs/ca-certificates.crt", "tmp"} {
		if !files[f] {
			t.Errorf("image has no /%s", f)
		}
	}
	for _, f := range []string{"usr/bin/sh", "usr/bin/bash", "usr/bin/apt-get", "usr/bin/dpkg"} {
		if files[f] {
			t.Errorf("image has /%s: it should hold only kedge and what kedge runs", f)
		}
	}
	t.Logf("image file system: %d entries", len(files))
}

// checkNoZombies fails if a process in container name's PID namespace is a
// zombie (a containerd shim that nobody reaped).
func checkNoZombies(t *testing.T, d *daemon, name string) {
	t.Helper()
	pid := d.must("inspect", "-f", "{{.State.Pid}}", name)
	ns, err := os.Readlink("/proc/" + pid + "/ns/pid")
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, name+": no zombie processes", func() error {
		procs, _ := filepath.Glob("/proc/[0-9]*")
		var zombies []string
		for _, p := range procs {
			if l, _ := os.Readlink(p + "/ns/pid"); l != ns {
				continue
			}
			stat, err := os.ReadFile(p + "/stat")
			if err != nil {
				continue
			}
			// pid (comm) state ...: comm may hold spaces, the state follows the last ')'.
			s := string(stat)
			if i := strings.LastIndexByte(s, ')'); i > 0 && strings.HasPrefix(s[i+1:], " Z") {
				zombies = append(zombies, s[:i+1])
			}
		}
		if len(zombies) > 0 {
			return fmt.Errorf("zombies: %s", strings.Join(zombies, ", "))
		}
		return nil
	})
}

// hostNetState is the host's FORWARD policy and net.ipv4.ip_forward, which
// the test's dockerd must leave alone.
func hostNetState(t *testing.T) (forward, ipForward string) {
	t.Helper()
	out, err := exec.Command("iptables", "-S", "FORWARD").Output()
	if err != nil {
		t.Fatalf("iptables -S FORWARD: %v", err)
	}
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	if err != nil {
		t.Fatal(err)
	}
	return strings.SplitN(string(out), "\n", 2)[0], strings.TrimSpace(string(b))
}

// repoRoot is the repository's top directory.
func repoRoot(t *testing.T) string {
	t.Helper()
	_, self, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(self), "..", "..")
}
