package install

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestInstall walks install.sh through a node's life under systemd: a
// tampered download refused, a server installed (active only once READY=1,
// its node Ready by then), a re-run that restarts nothing, a reboot, an
// agent that joins, and both uninstalled without a trace.
func TestInstall(t *testing.T) {
	bin := os.Getenv("KEDGE_BIN")
	if bin == "" {
		t.Skip("KEDGE_BIN is not set (make install-test sets it)")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root (systemd-nspawn)")
	}
	if _, err := exec.LookPath("systemd-nspawn"); err != nil {
		t.Skip("systemd-nspawn not found (Debian: apt-get install systemd-container)")
	}
	rootfs, err := ensureRootfs()
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	if dir := os.Getenv("KEDGE_INSTALL_TEST_LOGS"); dir != "" {
		work = dir
		os.MkdirAll(work, 0o755)
	}
	url := serveRelease(t, bin, work)

	s1 := newContainer(t, rootfs, work, "kit-s1", "10.77.0.2")
	s1.boot()
	t.Cleanup(s1.stop)
	baseline := snapshot(s1)

	t.Run("tampered binary refused", func(t *testing.T) {
		s1.t = t
		out, err := s1.run(context.Background(), nil, "bash", "-o", "pipefail", "-c",
			"curl -sfL "+url+"/tampered/install.sh | INSTALL_KEDGE_RELEASE_URL="+url+"/tampered sh -")
		if err == nil {
			t.Fatalf("install.sh accepted a tampered kedge:\n%s", out)
		}
		if !strings.Contains(out, "checksum mismatch") || !strings.Contains(out, "nothing was installed") {
			t.Errorf("install.sh failed without saying why:\n%s", out)
		}
		if diff := compare(baseline, snapshot(s1)); diff != "" {
			t.Errorf("a refused install changed the host:\n%s", diff)
		}
	})

	if !t.Run("server", func(t *testing.T) {
		s1.t = t
		states := watchUnit(s1, "kedge")
		install(t, s1, "kedge", "curl -sfL "+url+"/good/install.sh | INSTALL_KEDGE_RELEASE_URL="+url+"/good INSTALL_KEDGE_EXEC="+containerFlags+" sh -s - server --cluster-init")
		seen := states.stop()
		// The installer's systemctl restart returns on READY=1: by then
		// the node must be Ready, with no wait.
		if got := nodeReady(s1, "kit-s1"); got != "True" {
			t.Errorf("install.sh returned with node kit-s1 Ready=%q: READY=1 came before the node was Ready", got)
		}
		if st := s1.sh("systemctl show -p ActiveState -p SubState -p StatusText kedge"); !strings.Contains(st, "ActiveState=active\nSubState=running") ||
			!strings.Contains(st, "StatusText=kedge server ready") {
			t.Errorf("after install: %s", st)
		}
		if !containsState(seen, "activating", "waiting for") {
			t.Errorf("never saw the unit activating with a STATUS= line while kedge started: %q", seen)
		}
		t.Logf("unit states while starting: %q", seen)
		checkInstalled(t, s1, "kedge", "kedge-uninstall.sh")
	}) {
		return // the rest builds on it
	}

	if !t.Run("re-run restarts nothing", func(t *testing.T) {
		s1.t = t
		before := s1.sh("systemctl show -p MainPID -p NRestarts -p ExecMainStartTimestamp kedge")
		out := s1.sh("curl -sfL " + url + "/good/install.sh | INSTALL_KEDGE_RELEASE_URL=" + url + "/good INSTALL_KEDGE_EXEC=" + containerFlags + " sh -s - server --cluster-init")
		if after := s1.sh("systemctl show -p MainPID -p NRestarts -p ExecMainStartTimestamp kedge"); after != before {
			t.Errorf("re-running install.sh restarted kedge: %s, then %s", before, after)
		}
		if !strings.Contains(out, "not restarting") {
			t.Errorf("install.sh did not say it kept kedge running:\n%s", out)
		}
	}) {
		return // the rest builds on it
	}

	if !t.Run("reboot", func(t *testing.T) {
		s1.t = t
		s1.reboot()
		waitActive(t, s1, "kedge", 5*time.Minute)
		if got := nodeReady(s1, "kit-s1"); got != "True" {
			t.Errorf("after the reboot kedge is active but node kit-s1 Ready=%q", got)
		}
	}) {
		return // the rest builds on it
	}

	a1 := newContainer(t, rootfs, work, "kit-a1", "10.77.0.3")
	if !t.Run("agent joins", func(t *testing.T) {
		a1.t = t
		a1.boot()
		t.Cleanup(a1.stop)
		agentBaseline := snapshot(a1)
		token := s1.sh("cat /var/lib/kedge/server/agent-token")
		install(t, a1, "kedge-agent", "curl -sfL "+url+"/good/install.sh | INSTALL_KEDGE_RELEASE_URL="+url+"/good INSTALL_KEDGE_EXEC="+containerFlags+" KEDGE_URL=https://10.77.0.2:6443 KEDGE_TOKEN="+token+" sh -")
		waitActive(t, a1, "kedge-agent", time.Minute)
		if got := nodeReady(s1, "kit-a1"); got != "True" {
			t.Errorf("agent installed and active, but node kit-a1 Ready=%q", got)
		}
		checkInstalled(t, a1, "kedge-agent", "kedge-agent-uninstall.sh")
		if unit := a1.sh("cat /etc/systemd/system/kedge-agent.service"); strings.Contains(unit, token) {
			t.Errorf("the join token is in the unit (0644):\n%s", unit)
		}
		if env := a1.sh("cat /etc/systemd/system/kedge-agent.service.env"); !strings.Contains(env, "KEDGE_URL=\"https://10.77.0.2:6443\"") {
			t.Errorf("env file without KEDGE_URL:\n%s", env)
		}

		a1.sh("/usr/local/bin/kedge-agent-uninstall.sh")
		checkGone(t, a1, agentBaseline)
	}) {
		return // the rest builds on it
	}

	t.Run("server uninstall", func(t *testing.T) {
		s1.t = t
		s1.sh("/usr/local/bin/kedge-uninstall.sh")
		checkGone(t, s1, baseline)
	})
}

// containerFlags are what a kedge node needs in a container that is not
// in the host's network namespace: nf_conntrack_max is the host's, read-only
// there, so kube-proxy must leave it alone (as in tests/e2e).
const containerFlags = "--kube-proxy-arg=conntrack-max-per-core=0"

// serveRelease lays out dist/ as make release does (kedge-amd64, its
// checksum, install.sh) under /good/, and under /tampered/ the same with
// one byte of the binary changed, and serves both on the bridge.
func serveRelease(t *testing.T, bin, work string) string {
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	script, err := os.ReadFile(filepath.Join(repo, "install.sh"))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(raw)
	for _, d := range []string{"good", "tampered"} {
		dir := filepath.Join(work, "dist", d)
		os.MkdirAll(dir, 0o755)
		b := raw
		if d == "tampered" {
			b = append([]byte(nil), raw...)
			b[len(b)/2] ^= 0xff
		}
		write(t, filepath.Join(dir, "kedge-amd64"), b)
		write(t, filepath.Join(dir, "sha256sum-amd64.txt"), []byte(hex.EncodeToString(sum[:])+"  kedge-amd64\n"))
		write(t, filepath.Join(dir, "install.sh"), script)
	}
	setupBridge(t)
	ln, err := net.Listen("tcp", net.JoinHostPort(BridgeIP, "0"))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.FileServer(http.Dir(filepath.Join(work, "dist")))}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

func write(t *testing.T, path string, b []byte) {
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// setupBridge creates Bridge with BridgeIP on the host, for this test.
func setupBridge(t *testing.T) {
	exec.Command("ip", "link", "del", Bridge).Run() // a previous run's
	for _, args := range [][]string{
		{"link", "add", Bridge, "type", "bridge"},
		{"addr", "add", BridgeIP + "/24", "dev", Bridge},
		{"link", "set", Bridge, "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	t.Cleanup(func() { exec.Command("ip", "link", "del", Bridge).Run() })
}

// unitWatch samples a unit's state while something else runs.
type unitWatch struct {
	stopOnce sync.Once
	quit     chan struct{}
	done     chan struct{}
	seen     []string
}

func watchUnit(c *container, unit string) *unitWatch {
	w := &unitWatch{quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			out, _ := c.run(context.Background(), nil, "systemctl", "show", "-p", "ActiveState", "-p", "StatusText", "--value", unit)
			s := strings.Join(strings.Fields(strings.ReplaceAll(out, "\n", " | ")), " ")
			if len(w.seen) == 0 || w.seen[len(w.seen)-1] != s {
				w.seen = append(w.seen, s)
			}
			select {
			case <-w.quit:
				return
			case <-time.After(300 * time.Millisecond):
			}
		}
	}()
	return w
}

func (w *unitWatch) stop() []string {
	w.stopOnce.Do(func() { close(w.quit) })
	<-w.done
	return w.seen
}

func containsState(seen []string, state, status string) bool {
	for _, s := range seen {
		if strings.Contains(s, "| "+state+" |") && strings.Contains(s, status) {
			return true
		}
	}
	return false
}

// install runs an install command line on c; if it fails, the test stops
// with the installer's output and the unit's journal.
func install(t *testing.T, c *container, unit, script string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	out, err := c.run(ctx, nil, "bash", "-o", "pipefail", "-c", script)
	if err != nil {
		log, _ := c.run(context.Background(), nil, "sh", "-c", "journalctl -u "+unit+" --no-pager | grep -v 'retrying of unary invoker' | tail -n 60")
		t.Fatalf("%s: %s: %v\n%s\njournal:\n%s", c.name, script, err, out, log)
	}
	return out
}

// nodeReady is the Ready condition of node, read on the server c.
func nodeReady(c *container, node string) string {
	out, _ := c.run(context.Background(), nil, "kubectl", "get", "node", node, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
	return strings.TrimSpace(out)
}

// waitActive waits for unit to be active: after READY=1.
func waitActive(t *testing.T, c *container, unit string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		out, _ := c.run(context.Background(), nil, "systemctl", "is-active", unit)
		if strings.TrimSpace(out) == "active" {
			return
		}
		if time.Now().After(deadline) {
			log, _ := c.run(context.Background(), nil, "journalctl", "-u", unit, "--no-pager", "-n", "40")
			t.Fatalf("%s: %s not active after %s: %s\n%s", c.name, unit, timeout, out, log)
		}
		time.Sleep(2 * time.Second)
	}
}

// checkInstalled checks the files install.sh promises.
func checkInstalled(t *testing.T, c *container, name, uninstall string) {
	t.Helper()
	unit := "/etc/systemd/system/" + name + ".service"
	got := c.sh("stat -c '%n %a' " + unit + ".env /usr/local/bin/kedge /usr/local/bin/kedge-killall.sh /usr/local/bin/" + uninstall +
		" && readlink /usr/local/bin/kubectl /usr/local/bin/crictl /usr/local/bin/ctr")
	want := unit + ".env 600\n/usr/local/bin/kedge 755\n/usr/local/bin/kedge-killall.sh 755\n/usr/local/bin/" + uninstall + " 755\nkedge\nkedge\nkedge"
	if got != want {
		t.Errorf("installed files:\n%s\nwant:\n%s", got, want)
	}
	if out, err := c.run(context.Background(), nil, "systemd-analyze", "verify", unit); err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("systemd-analyze verify %s: %v\n%s", unit, err, out)
	}
	for _, key := range []string{"Type=notify", "Delegate=yes", "KillMode=process", "Restart=always", "RestartSec=5s",
		"LimitNOFILE=1048576", "TasksMax=infinity", "TimeoutStartSec=0",
		"ExecStartPre=-/sbin/modprobe br_netfilter", "ExecStartPre=-/sbin/modprobe overlay"} {
		if out := c.sh("grep -cxF '" + key + "' " + unit + " || true"); out != "1" {
			t.Errorf("%s: %q %s times, want once", unit, key, out)
		}
	}
}

// snapshot lists what kedge could leave behind on c: files (names, kinds,
// modes, link targets) where an install writes, mounts, network links,
// iptables and nftables rules, processes, and systemd's units.
func snapshot(c *container) map[string]string {
	list := func(script string) string { // an empty list is no failure
		out, err := c.run(context.Background(), nil, "sh", "-c", script)
		if err != nil && out == "" {
			c.t.Fatalf("%s: %s: %v", c.name, script, err)
		}
		return strings.TrimSpace(out)
	}
	return map[string]string{
		"files":      list(`find /usr/local /etc /opt /var/lib /run -xdev \( -path /var/lib/systemd -o -path /run/systemd -o -path /run/user -o -path /run/dbus -o -path /run/log -o -path /var/lib/dpkg -o -path /etc/ld.so.cache -o -path /run/agetty.reload \) -prune -o -printf '%p %y %m %l\n' | sort`),
		"mounts":     list(`findmnt -rn -o TARGET | sort`),
		"links":      list(`ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | sort`),
		"iptables":   list(`iptables-save | grep -v '^#' | sed 's/\[[0-9]*:[0-9]*\]//' | sort`),
		"ip6tables":  list(`ip6tables-save | grep -v '^#' | sed 's/\[[0-9]*:[0-9]*\]//' | sort`),
		"nft tables": list(`nft list tables | sort`),
		"processes":  list(`ps -eo args= | grep -E 'kedge|containerd|runc|pause|coredns' | grep -v grep | sort`),
		"units":      list(`systemctl list-unit-files --no-legend 'kedge*' | sort`),
	}
}

// compare names what differs between two snapshots, "" when nothing does.
func compare(before, after map[string]string) string {
	var b strings.Builder
	for k, was := range before {
		if now := after[k]; now != was {
			old := lineSet(was)
			for _, l := range strings.Split(now, "\n") {
				if !old[l] {
					b.WriteString(k + ": added " + l + "\n")
				}
			}
			cur := lineSet(now)
			for _, l := range strings.Split(was, "\n") {
				if !cur[l] {
					b.WriteString(k + ": removed " + l + "\n")
				}
			}
		}
	}
	return b.String()
}

func lineSet(s string) map[string]bool {
	m := map[string]bool{}
	for _, l := range strings.Split(s, "\n") {
		m[l] = true
	}
	return m
}

// checkGone checks that an uninstall left c as it was before the install.
func checkGone(t *testing.T, c *container, baseline map[string]string) {
	t.Helper()
	if diff := compare(baseline, snapshot(c)); diff != "" {
		t.Errorf("%s: after the uninstall, kedge left:\n%s", c.name, diff)
	}
}
