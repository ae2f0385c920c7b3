package install

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// These tests are fast (make test): install.sh is shellcheck-clean, and in
// a private mount namespace that looks like a systemd host (a fake
// systemctl, the kedge binary a stub) it writes a unit that systemd-analyze
// verify accepts, quotes kedge's arguments for systemd, keeps the token out
// of the unit, and restarts kedge only when something changed.

func TestShellcheck(t *testing.T) {
	if _, err := exec.LookPath("shellcheck"); err != nil {
		t.Skip("shellcheck not found (Debian: apt-get install shellcheck)")
	}
	if out, err := exec.Command("shellcheck", "../../install.sh").CombinedOutput(); err != nil {
		t.Fatalf("shellcheck install.sh: %v\n%s", err, out)
	}
}

// sandbox runs install.sh with env in a mount namespace where /run is
// private and says systemd runs, the bin and systemd dirs are under dir and
// systemctl logs its calls to dir/systemctl.log.
func sandbox(t *testing.T, dir string, env []string, args ...string) string {
	return sandboxInit(t, "systemd", dir, env, args...)
}

// sandboxInit is sandbox for init systemd or openrc: for OpenRC, /sbin
// (in the namespace) holds only a fake openrc-run, and rc-update and
// rc-service log their calls to dir/systemctl.log too.
func sandboxInit(t *testing.T, init, dir string, env []string, args ...string) string {
	t.Helper()
	fake := filepath.Join(dir, "fake")
	os.MkdirAll(fake, 0o755)
	for _, tool := range []string{"systemctl", "rc-update", "rc-service"} {
		write(t, filepath.Join(fake, tool), []byte("#!/bin/sh\necho \""+tool+" $*\" >>"+dir+"/systemctl.log\n"+
			"case \"$*\" in is-active*|*status) [ -f "+dir+"/active ] ;; esac\n"))
		os.Chmod(filepath.Join(fake, tool), 0o755)
	}
	setup := `mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/system`
	if init == "openrc" {
		sbin := filepath.Join(dir, "sbin")
		os.MkdirAll(sbin, 0o755)
		write(t, filepath.Join(sbin, "openrc-run"), []byte("#!/bin/sh\n"))
		os.Chmod(filepath.Join(sbin, "openrc-run"), 0o755)
		// /etc as an overlay: what install.sh writes there (init.d,
		// /etc/kedge) stays in dir/etc-upper, the host's /etc untouched.
		os.MkdirAll(filepath.Join(dir, "etc-upper"), 0o755)
		os.MkdirAll(filepath.Join(dir, "etc-work"), 0o755)
		setup = `mount -t tmpfs tmpfs /run && mount --bind ` + sbin + ` /sbin && mount -t overlay overlay -o lowerdir=/etc,upperdir=` +
			dir + `/etc-upper,workdir=` + dir + `/etc-work /etc`
	}
	script, _ := filepath.Abs("../../install.sh")
	cmd := exec.Command("unshare", append([]string{"--mount", "--propagation", "private", "sh", "-c",
		setup + ` && exec sh "$0" "$@"`, script}, args...)...)
	cmd.Env = append([]string{"PATH=" + fake + ":/usr/sbin:/usr/bin:/sbin:/bin",
		"INSTALL_KEDGE_SKIP_DOWNLOAD=true", "INSTALL_KEDGE_BIN_DIR=" + dir + "/bin", "INSTALL_KEDGE_SYSTEMD_DIR=" + dir + "/systemd"}, env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("install.sh %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestUnit(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (a private mount namespace)")
	}
	for _, tool := range []string{"unshare", "systemd-analyze"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not found", tool)
		}
	}
	dir := t.TempDir()
	os.MkdirAll(dir+"/bin", 0o755)
	write(t, dir+"/bin/kedge", []byte("#!/bin/sh\necho kedge version v1.36.4+kedge1\n"))
	os.Chmod(dir+"/bin/kedge", 0o755)
	env := []string{"KEDGE_URL=https://10.0.0.1:6443", "KEDGE_TOKEN=K10abc::secret", "HTTPS_PROXY=http://proxy:3128", "NOT_KEDGE=x"}
	sandbox(t, dir, env, "agent", "--node-label", "a=b c", `--kubelet-arg=x="%h$HOME\"`)

	unit, err := os.ReadFile(dir + "/systemd/kedge-agent.service")
	if err != nil {
		t.Fatal(err)
	}
	// KEDGE_URL and KEDGE_TOKEN reach kedge through its environment (the
	// env file): in no command line.
	wantExec := "ExecStart=" + dir + `/bin/kedge agent "--node-label" "a=b c" "--kubelet-arg=x=\"%%h$$HOME\\\""`
	if !strings.Contains(string(unit), wantExec+"\n") {
		t.Errorf("unit:\n%s\nwant the line\n%s", unit, wantExec)
	}
	if strings.Contains(string(unit), "secret") || strings.Contains(string(unit), "--token") {
		t.Errorf("the token is in the unit or its command line:\n%s", unit)
	}
	envFile, err := os.ReadFile(dir + "/systemd/kedge-agent.service.env")
	if err != nil {
		t.Fatal(err)
	}
	if want := "HTTPS_PROXY=\"http://proxy:3128\"\nKEDGE_TOKEN=\"K10abc::secret\"\nKEDGE_URL=\"https://10.0.0.1:6443\"\n"; string(envFile) != want {
		t.Errorf("env file:\n%s\nwant:\n%s", envFile, want)
	}
	if fi, _ := os.Stat(dir + "/systemd/kedge-agent.service.env"); fi.Mode().Perm() != 0o600 {
		t.Errorf("env file mode %v, want 0600", fi.Mode().Perm())
	}
	// verify wants ExecStartPre's /sbin/modprobe; a host without kmod has none.
	verify := exec.Command("systemd-analyze", "verify", dir+"/systemd/kedge-agent.service")
	if out, err := verify.CombinedOutput(); err != nil {
		if _, statErr := os.Stat("/sbin/modprobe"); statErr == nil || !strings.Contains(string(out), "/sbin/modprobe") {
			t.Errorf("systemd-analyze verify: %v\n%s", err, out)
		}
	}
	for _, f := range []string{"kedge-killall.sh", "kedge-agent-uninstall.sh"} {
		if out, err := exec.Command("sh", "-n", dir+"/bin/"+f).CombinedOutput(); err != nil {
			t.Errorf("%s: %v\n%s", f, err, out)
		}
	}

	// Again, running, nothing changed: no restart; a changed env: restart.
	write(t, dir+"/active", nil)
	os.Remove(dir + "/systemctl.log")
	sandbox(t, dir, env, "agent", "--node-label", "a=b c", `--kubelet-arg=x="%h$HOME\"`)
	if log, _ := os.ReadFile(dir + "/systemctl.log"); strings.Contains(string(log), "restart") {
		t.Errorf("re-run with nothing changed restarted kedge:\n%s", log)
	}
	sandbox(t, dir, append(env, "KEDGE_NODE_NAME=n2"), "agent", "--node-label", "a=b c", `--kubelet-arg=x="%h$HOME\"`)
	if log, _ := os.ReadFile(dir + "/systemctl.log"); !strings.Contains(string(log), "restart kedge-agent.service") {
		t.Errorf("a changed env file did not restart kedge:\n%s", log)
	}
}

// TestOpenRC: without systemd, install.sh writes an OpenRC service run by
// supervise-daemon, with the arguments quoted for its eval.
func TestOpenRC(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (a private mount namespace)")
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("unshare not found")
	}
	if _, err := os.Stat("/etc/init.d/kedge"); err == nil {
		t.Skip("/etc/init.d/kedge exists on this host")
	}
	dir := t.TempDir()
	os.MkdirAll(dir+"/bin", 0o755)
	write(t, dir+"/bin/kedge", []byte("#!/bin/sh\necho kedge version v1.36.4+kedge1\n"))
	os.Chmod(dir+"/bin/kedge", 0o755)
	sandboxInit(t, "openrc", dir, []string{"KEDGE_TOKEN=s3cret"}, "server", "--cluster-init", "--tls-san", "it's")
	svc, err := os.ReadFile(dir + "/etc-upper/init.d/kedge")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"#!/sbin/openrc-run\n", "supervisor=supervise-daemon\n", "command=\"" + dir + "/bin/kedge\"\n",
		`command_args="server '--cluster-init' '--tls-san' 'it'\''s'"` + "\n", ". \"/etc/kedge/kedge.env\"", "set -o allexport\n"} {
		if !strings.Contains(string(svc), want) {
			t.Errorf("OpenRC service lacks %q:\n%s", want, svc)
		}
	}
	if out, err := exec.Command("sh", "-n", dir+"/etc-upper/init.d/kedge").CombinedOutput(); err != nil {
		t.Errorf("sh -n: %v\n%s", err, out)
	}
	// What supervise-daemon runs: the env file sourced and exported (kedge
	// reads KEDGE_TOKEN from its environment), command_args evaluated.
	out, err := exec.Command("sh", "-c", `set -a; . `+dir+`/etc-upper/kedge/kedge.env; set +a; eval "set -- $(sed -n 's/^command_args=//p' `+dir+`/etc-upper/init.d/kedge)"; eval "set -- $1"; printf '[%s]' "$@"; sh -c 'printf "[KEDGE_TOKEN=%s]" "$KEDGE_TOKEN"'`).CombinedOutput()
	if want := "[server][--cluster-init][--tls-san][it's][KEDGE_TOKEN=s3cret]"; err != nil || string(out) != want {
		t.Errorf("the service runs kedge with %s (%v), want %s", out, err, want)
	}
	log, _ := os.ReadFile(dir + "/systemctl.log")
	if !strings.Contains(string(log), "rc-update add kedge default") || !strings.Contains(string(log), "rc-service kedge restart") {
		t.Errorf("OpenRC calls:\n%s", log)
	}
}
