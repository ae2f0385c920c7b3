package embedded

import (
	"archive/tar"
	"debug/elf"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// realAssets extracts the assets compiled into this test binary, or skips
// when it was built without them (`go test` without `make helpers`).
func realAssets(t *testing.T) Assets {
	t.Helper()
	if _, err := fs.Stat(AssetsFS(), manifestFile); err != nil {
		t.Skip("built without helper assets; run `make helpers` first")
	}
	a, err := Extract(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestRealAssetsRunc(t *testing.T) {
	a := realAssets(t)
	out, err := exec.Command(a.Runc, "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("runc --version: %v\n%s", err, out)
	}
	want := "runc version " + strings.TrimPrefix(RuncVersion, "v")
	if !strings.HasPrefix(string(out), want+"\n") {
		t.Errorf("runc --version = %q, want %q first", out, want)
	}
}

func TestRealAssetsCNIPlugins(t *testing.T) {
	a := realAssets(t)
	for _, p := range []string{"bridge", "host-local", "loopback", "portmap"} {
		cmd := exec.Command(filepath.Join(a.BinDir, p))
		cmd.Env = []string{"CNI_COMMAND=VERSION"}
		cmd.Stdin = strings.NewReader("{}")
		out, err := cmd.Output()
		if err != nil || !strings.Contains(string(out), `"supportedVersions"`) {
			t.Errorf("CNI_COMMAND=VERSION %s: %v, %q", p, err, out)
		}
	}
	// Without CNI_COMMAND a plugin prints its name and build version.
	out, _ := exec.Command(filepath.Join(a.BinDir, "bridge")).CombinedOutput()
	if want := "CNI bridge plugin " + CNIPluginsVersion; !strings.Contains(string(out), want) {
		t.Errorf("bridge says %q, want %q", out, want)
	}
}

// TestRealAssetsShim checks containerd-shim-runc-v2 is containerd's own
// shim, a static executable of the containerd version kedge embeds (the one
// go.mod requires).
func TestRealAssetsShim(t *testing.T) {
	a := realAssets(t)
	shim := filepath.Join(a.BinDir, "containerd-shim-runc-v2")
	info, err := os.Lstat(shim)
	if err != nil {
		t.Fatal(err)
	}
	if !info.Mode().IsRegular() || info.Mode().Perm() != 0o755 {
		t.Errorf("%s: mode %v, want a regular 0755 file", shim, info.Mode())
	}
	f, err := elf.Open(shim)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s is dynamically linked, want static (CGO_ENABLED=0)", shim)
		}
	}
	out, err := exec.Command(shim, "-v").CombinedOutput()
	if err != nil {
		t.Fatalf("%s -v: %v\n%s", shim, err, out)
	}
	want := containerdVersion(t)
	if !regexp.MustCompile(`(?m)^\s*Version:\s+` + regexp.QuoteMeta(want) + `$`).Match(out) {
		t.Errorf("containerd-shim-runc-v2 -v = %q, want Version: %s", out, want)
	}
}

// containerdVersion reads the github.com/containerd/containerd/v2 version
// kedge's go.mod requires.
func containerdVersion(t *testing.T) string {
	t.Helper()
	mod, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*github\.com/containerd/containerd/v2 (v\S+)`).FindSubmatch(mod)
	if m == nil {
		t.Fatal("go.mod does not require github.com/containerd/containerd/v2")
	}
	return string(m[1])
}

// pauseBinary loads the pause image with go-containerregistry, checks its
// config and single layer, and writes the layer's /pause to a temp file.
func pauseBinary(t *testing.T, a Assets) string {
	t.Helper()
	tag, err := name.NewTag(PauseImage)
	if err != nil {
		t.Fatal(err)
	}
	img, err := tarball.ImageFromPath(a.PauseImageTar, &tag)
	if err != nil {
		t.Fatalf("load %s as %s: %v", a.PauseImageTar, PauseImage, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cf.Config.Entrypoint, []string{"/pause"}) || cf.OS != "linux" {
		t.Errorf("config: entrypoint %q os %q", cf.Config.Entrypoint, cf.OS)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers: %d, %v; want 1", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			t.Fatal("layer has no pause entry")
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Name != "pause" {
			continue
		}
		if h.Mode != 0o755 || h.Uid != 0 || h.Gid != 0 {
			t.Errorf("/pause: mode %o owner %d:%d, want 0755 0:0", h.Mode, h.Uid, h.Gid)
		}
		p := filepath.Join(t.TempDir(), "pause")
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE, 0o755)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(f, tr); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		return p
	}
}

// pauseProc is a started pause process.
type pauseProc struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed when it has exited; then err is set
	err    error
}

// startPause starts cmd and stops it when the test ends.
func startPause(t *testing.T, cmd *exec.Cmd) *pauseProc {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &pauseProc{cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.exited
	})
	return p
}

// pausesThenStops checks the process is still running after 200 ms and
// exits 0 within 1 s of SIGTERM.
func pausesThenStops(t *testing.T, p *pauseProc) {
	t.Helper()
	select {
	case <-p.exited:
		t.Fatalf("pause exited early: %v", p.err)
	case <-time.After(200 * time.Millisecond):
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.exited:
		if p.err != nil {
			t.Errorf("pause after SIGTERM: %v, want exit 0", p.err)
		}
	case <-time.After(time.Second):
		t.Fatal("pause still running 1 s after SIGTERM")
	}
}

func TestRealAssetsPauseImage(t *testing.T) {
	a := realAssets(t)
	bin := pauseBinary(t, a)
	pausesThenStops(t, startPause(t, exec.Command(bin)))
}

// TestRealAssetsPauseAsPID1 runs pause as PID 1 of a new PID namespace, as
// in a pod sandbox: the kernel delivers SIGTERM to a namespace's init only
// if it handles it, and orphans of the namespace become its children, which
// it must reap.
func TestRealAssetsPauseAsPID1(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a PID namespace")
	}
	a := realAssets(t)
	bin := pauseBinary(t, a)
	cmd := exec.Command(bin)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID}
	p := startPause(t, cmd)
	pid := cmd.Process.Pid

	if nsenter, err := exec.LookPath("nsenter"); err == nil {
		// sh backgrounds a sleep and exits: the sleep is orphaned to pause.
		out, err := exec.Command(nsenter, "-t", strconv.Itoa(pid), "-p", "--",
			"/bin/sh", "-c", "sleep 0.5 </dev/null >/dev/null 2>&1 & exit 0").CombinedOutput()
		if err != nil {
			t.Fatalf("nsenter: %v\n%s", err, out)
		}
		if len(children(pid)) == 0 {
			t.Fatal("the orphaned sleep did not become a child of pause")
		}
		deadline := time.Now().Add(2 * time.Second)
		for len(children(pid)) > 0 {
			if time.Now().After(deadline) {
				t.Fatalf("pause did not reap its children: %v", children(pid))
			}
			time.Sleep(20 * time.Millisecond)
		}
	} else {
		t.Log("no nsenter: reaping not checked")
	}
	pausesThenStops(t, p)
}

// children lists "pid state" of the processes whose parent is ppid.
func children(ppid int) []string {
	var out []string
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		if _, err := strconv.Atoi(d.Name()); err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", d.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid …; comm may hold spaces, so split after ')'.
		s := string(stat)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(fields) > 1 && fields[1] == strconv.Itoa(ppid) {
			out = append(out, d.Name()+" "+fields[0])
		}
	}
	return out
}

// BenchmarkExtractWarm measures Extract on every start after the first:
// hashing the manifest and checking the extracted directory.
func BenchmarkExtractWarm(b *testing.B) {
	if _, err := fs.Stat(AssetsFS(), manifestFile); err != nil {
		b.Skip("built without helper assets; run `make helpers` first")
	}
	dir := b.TempDir()
	if _, err := Extract(dir); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := Extract(dir); err != nil {
			b.Fatal(err)
		}
	}
}
