package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kedge-io/kedge/pkg/etcdsnapshot"
)

func TestSnapshotFlags(t *testing.T) {
	base := []string{"--node-ip=192.0.2.10", "--node-name=node-1", "--data-dir=/srv/k"}
	f, _ := parseServerFlags(t, base...)
	c, err := f.serverConfig(testExec)
	if err != nil {
		t.Fatal(err)
	}
	s := c.EtcdSnapshots
	if s.Disable || s.Cron != "0 */12 * * *" || s.Retention != 5 || s.Dir != "/srv/k/server/db/snapshots" || s.Compress || s.Schedule == nil {
		t.Errorf("defaults: %+v", s)
	}
	if c.ClusterReset || c.ClusterResetRestorePath != "" || c.EtcdAutoRestore {
		t.Errorf("reset defaults: %+v", c)
	}

	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"config.yaml": "etcd-snapshot-schedule-cron: '*/30 * * * *'\netcd-snapshot-retention: 10\netcd-snapshot-dir: /backup/etcd\netcd-snapshot-compress: true\netcd-auto-restore: yes\n"})
	f, fs := parseServerFlags(t, append(base, "--cluster-reset-restore-path=snap.db")...)
	if err := applyConfigFile(fs, filepath.Join(dir, "config.yaml"), true); err != nil {
		t.Fatal(err)
	}
	if c, err = f.serverConfig(testExec); err != nil {
		t.Fatal(err)
	}
	s = c.EtcdSnapshots
	wd, _ := os.Getwd()
	if s.Cron != "*/30 * * * *" || s.Retention != 10 || s.Dir != "/backup/etcd" || !s.Compress || !c.EtcdAutoRestore || c.ClusterResetRestorePath != filepath.Join(wd, "snap.db") {
		t.Errorf("from the config file: %+v %+v", s, c)
	}
	if next := s.Schedule.Next(time.Date(2026, 1, 1, 10, 5, 0, 0, time.Local)); next.Minute() != 30 {
		t.Errorf("*/30 next at %s", next)
	}

	for _, bad := range []struct{ arg, want string }{
		{"--etcd-snapshot-schedule-cron=0 */12 * *", "--etcd-snapshot-schedule-cron"},
		{"--etcd-snapshot-retention=0", "--etcd-snapshot-retention 0"},
	} {
		f, _ := parseServerFlags(t, append(base, bad.arg)...)
		if _, err := f.serverConfig(testExec); err == nil || !strings.HasPrefix(err.Error(), bad.want) {
			t.Errorf("%s: %v", bad.arg, err)
		}
	}
}

// TestEtcdSnapshotCommands: ls, delete and prune work on the snapshot dir
// named in the server's config file; save needs the server's certificates.
func TestEtcdSnapshotCommands(t *testing.T) {
	dir := t.TempDir()
	snaps := filepath.Join(dir, "snaps")
	if err := os.MkdirAll(snaps, 0o700); err != nil {
		t.Fatal(err)
	}
	for i, name := range []string{
		etcdsnapshot.FileName("on-demand", "n1", time.Unix(1767225600, 0), false),
		etcdsnapshot.FileName("on-demand", "n1", time.Unix(1767225700, 0), true),
		etcdsnapshot.FileName("on-demand", "n1", time.Unix(1767225800, 0), false),
		etcdsnapshot.FileName("etcd-snapshot", "n1", time.Unix(1767225900, 0), false),
	} {
		if err := os.WriteFile(filepath.Join(snaps, name), bytes.Repeat([]byte("x"), 1000*(i+1)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeFiles(t, dir, map[string]string{"config.yaml": "node-name: n1\ndata-dir: " + dir + "\netcd-snapshot-dir: " + snaps + "\ncluster-cidr: 10.42.0.0/16\n"})
	run := func(args ...string) (string, error) {
		cmd := newEtcdSnapshotCommand()
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		cmd.SetArgs(append(args, "--config", filepath.Join(dir, "config.yaml")))
		err := cmd.Execute()
		return out.String(), err
	}
	out, err := run("ls")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("ls:\n%s", out)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 5 || !regexpLine(lines[0], `^NAME +SIZE +CREATED +NODE$`) ||
		!regexpLine(lines[2], `^on-demand-n1-1767225700.zst +2.0 KiB +2026-01-01T00:01:40Z +n1$`) {
		t.Fatalf("ls:\n%s", out)
	}
	if out, err := run("delete", "on-demand-n1-1767225600", "nope"); err == nil || !strings.Contains(err.Error(), `no snapshot "nope"`) {
		t.Fatalf("delete of a missing name: %v %s", err, out)
	}
	out, err = run("prune", "--snapshot-retention", "1")
	if err != nil || strings.Count(out, "deleted snapshot on-demand-n1-") != 2 {
		t.Fatalf("prune: %v\n%s", err, out)
	}
	out, err = run("delete", "on-demand-n1-1767225800")
	if err != nil || out != "deleted snapshot on-demand-n1-1767225800\n" {
		t.Fatalf("delete: %v %q", err, out)
	}
	if out, _ := run("ls"); strings.Count(out, "\n") != 2 || !strings.Contains(out, "etcd-snapshot-n1-1767225900") {
		t.Fatalf("left:\n%s", out)
	}
	if _, err := run("save"); err == nil || !strings.Contains(err.Error(), "no etcd client certificate") {
		t.Fatalf("save without a server: %v", err)
	}
}

func regexpLine(line, expr string) bool { return regexp.MustCompile(expr).MatchString(line) }
