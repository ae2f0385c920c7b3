package containerd

import (
	"bufio"
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/kedge-io/kedge/pkg/hostinfo"
)

const (
	ociImage    = "kedge.test/sleeper:1"        // the OCI archive's ref.name
	dockerImage = "kedge.test/sleeper-docker:1" // the docker archive's RepoTag
)

// shimName is the executable containerd runs for RuntimeType, found on PATH.
const shimName = "containerd-shim-runc-v2"

// testEnv is one containerd of the test binary and what it runs from.
type testEnv struct {
	cfg Config
	// shim is the real containerd-shim-runc-v2 BinDir links to, symlinks
	// resolved (what /proc/<pid>/exe of a shim shows), or "" when
	// KEDGE_TEST_BINDIR is unset: then no container can run.
	shim string
}

// newTestEnv lays out short directories (socket paths must stay under 108
// bytes). When KEDGE_TEST_BINDIR is set (make unit sets it to
// pkg/embedded/assets/bin, where `make helpers` builds them), BinDir holds
// links to its runc and containerd-shim-runc-v2, as the extracted assets'
// bin directory holds them on a node.
func newTestEnv(t *testing.T) *testEnv {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("containerd needs root")
	}
	short, err := os.MkdirTemp("/tmp", "kctd")
	mustf(t, err, "temp dir")
	t.Cleanup(func() { os.RemoveAll(short) })
	bin := filepath.Join(short, "bin")
	mustf(t, os.MkdirAll(bin, 0o755), "bin dir")
	env := &testEnv{}
	if dir := os.Getenv("KEDGE_TEST_BINDIR"); dir != "" {
		for _, name := range []string{"runc", shimName} {
			src, err := filepath.Abs(filepath.Join(dir, name))
			mustf(t, err, "KEDGE_TEST_BINDIR")
			if _, err := os.Stat(src); err != nil {
				t.Fatalf("KEDGE_TEST_BINDIR=%s has no %s (run `make helpers`): %v", dir, name, err)
			}
			mustf(t, os.Symlink(src, filepath.Join(bin, name)), "%s link", name)
		}
		env.shim, err = filepath.EvalSymlinks(filepath.Join(bin, shimName))
		mustf(t, err, "resolve the shim")
	}
	level := slog.LevelInfo
	if testing.Verbose() {
		level = slog.LevelDebug
	}
	env.cfg = Config{
		Root:         filepath.Join(t.TempDir(), "root"),
		State:        filepath.Join(short, "state"),
		Address:      filepath.Join(short, "state", "containerd.sock"),
		BinDir:       bin,
		CNIBinDir:    bin,
		CNIConfDir:   filepath.Join(short, "cni"),
		RegistryDir:  filepath.Join(t.TempDir(), "certs.d"),
		SandboxImage: ociImage,
		Host:         hostinfo.Detect(),
		Log:          slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: level})),
	}
	return env
}

// testWriter sends log lines to t.Log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func startContainerd(t *testing.T, cfg Config) *Containerd {
	t.Helper()
	c := New(cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	began := time.Now()
	mustf(t, c.Start(ctx), "Start")
	if err := c.Ready(ctx); err != nil {
		_ = c.Stop(context.Background())
		t.Fatalf("Ready: %v", err)
	}
	t.Logf("containerd ready in %v", time.Since(began).Round(time.Millisecond))
	return c
}

func stopContainerd(t *testing.T, c *Containerd) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	began := time.Now()
	mustf(t, c.Stop(ctx), "Stop within 5 s")
	t.Logf("containerd stopped in %v", time.Since(began).Round(time.Millisecond))
}

// criClient dials the CRI services on address as the kubelet does.
func criClient(t *testing.T, address string) (runtimeapi.RuntimeServiceClient, runtimeapi.ImageServiceClient) {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+address, grpc.WithTransportCredentials(insecure.NewCredentials()))
	mustf(t, err, "dial %s", address)
	t.Cleanup(func() { conn.Close() })
	return runtimeapi.NewRuntimeServiceClient(conn), runtimeapi.NewImageServiceClient(conn)
}

// memory returns the Go heap in use and the process RSS, in MiB.
func memory() (heap, rss float64) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return float64(ms.HeapInuse) / (1 << 20), float64(rssKiB(os.Getpid())) / 1024
}

// rssKiB reads VmRSS of a process.
func rssKiB(pid int) int { return procKiB("/proc/"+strconv.Itoa(pid)+"/status", "VmRSS:") }

// anonKiB reads the anonymous (private, not file-backed) memory of a
// process: what each shim costs beyond the executable's shared pages.
func anonKiB(pid int) int {
	return procKiB("/proc/"+strconv.Itoa(pid)+"/smaps_rollup", "Anonymous:")
}

// procKiB reads a "Key: N kB" line of a /proc file.
func procKiB(path, key string) int {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), key); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	return 0
}

func TestContainerd(t *testing.T) {
	env := newTestEnv(t)
	cfg := env.cfg
	heap0, rss0 := memory()
	c := startContainerd(t, cfg)
	defer func() { stopContainerd(t, c) }()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	t.Run("serves", func(t *testing.T) {
		cl, err := client.New(cfg.Address)
		mustf(t, err, "client")
		defer cl.Close()
		v, err := cl.Version(ctx)
		mustf(t, err, "containerd Version")
		rs, _ := criClient(t, cfg.Address)
		cv, err := rs.Version(ctx, &runtimeapi.VersionRequest{})
		mustf(t, err, "CRI RuntimeService.Version")
		t.Logf("containerd %s, CRI %s %s %s", v.Version, cv.RuntimeName, cv.RuntimeVersion, cv.RuntimeApiVersion)
		st, err := os.Stat(cfg.Address)
		mustf(t, err, "socket")
		if st.Mode()&os.ModeSocket == 0 || st.Mode().Perm() != 0o660 {
			t.Errorf("socket mode = %v, want a 0660 socket", st.Mode())
		}
		if _, err := os.Stat(cfg.TTRPCAddress()); err != nil {
			t.Errorf("ttrpc socket: %v", err)
		}
		if !strings.HasPrefix(os.Getenv("PATH"), cfg.BinDir+":") {
			t.Errorf("PATH does not start with BinDir: %s", os.Getenv("PATH"))
		}
		// containerd looks the shim up in PATH (core/runtime/v2/binary.go):
		// BinDir's, not one installed on the host.
		if env.shim != "" {
			if p, err := exec.LookPath(shimName); err != nil || p != filepath.Join(cfg.BinDir, shimName) {
				t.Errorf("PATH lookup of %s = %q, %v; want BinDir's", shimName, p, err)
			}
		}
		status, err := rs.Status(ctx, &runtimeapi.StatusRequest{Verbose: true})
		mustf(t, err, "CRI Status")
		for _, c := range status.Status.Conditions {
			t.Logf("CRI condition %s=%v %s", c.Type, c.Status, c.Message)
		}
		if !strings.Contains(status.Info["config"], `"restrictOOMScoreAdj":`+strconv.FormatBool(!cfg.Host.CanRaiseOOMPriority)) {
			t.Errorf("CRI config does not restrict oom_score_adj as the host needs:\n%s", status.Info["config"])
		}
	})

	heap1, rss1 := memory()
	time.Sleep(3 * time.Second)
	heap2, rss2 := memory()
	t.Logf("memory: Go heap %.1f → %.1f MiB (+%.1f), RSS %.1f → %.1f MiB (+%.1f) with containerd idle; 3 s later heap %.1f RSS %.1f",
		heap0, heap1, heap1-heap0, rss0, rss1, rss1-rss0, heap2, rss2)

	sleeper := buildSleeper(t)
	img := sleeperImage(t, sleeper)
	dir := t.TempDir()

	t.Run("import", func(t *testing.T) {
		oci := writeFile(t, dir, "oci.tar.zst", zstdCompress(t, ociArchive(t, img, ociImage)))
		names, err := ImportFile(ctx, cfg.Address, oci)
		mustf(t, err, "import OCI tar.zst")
		if len(names) != 1 || names[0] != ociImage {
			t.Errorf("OCI import names = %v, want [%s]", names, ociImage)
		}
		docker := writeFile(t, dir, "docker.tar", dockerArchive(t, img, dockerImage))
		names, err = ImportFile(ctx, cfg.Address, docker)
		mustf(t, err, "import docker archive")
		if len(names) != 1 || names[0] != dockerImage {
			t.Errorf("docker import names = %v, want [%s]", names, dockerImage)
		}
		bare := writeFile(t, dir, "bare.tar", ociArchive(t, img, "1.0"))
		if _, err := ImportFile(ctx, cfg.Address, bare); err == nil || !strings.Contains(err.Error(), "no named image") {
			t.Errorf("import of an archive naming only a tag: err = %v", err)
		}

		mustf(t, Pin(ctx, cfg.Address, ociImage), "Pin")
		_, is := criClient(t, cfg.Address)
		deadline := time.Now().Add(10 * time.Second)
		for {
			st, err := is.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: ociImage}})
			mustf(t, err, "CRI ImageStatus")
			if st.Image != nil && st.Image.Pinned {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("CRI does not report %s pinned: %+v", ociImage, st.Image)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err := Pin(ctx, cfg.Address, "kedge.test/missing:1"); err == nil {
			t.Error("Pin of a missing image succeeded")
		}
	})

	t.Run("importer", func(t *testing.T) { testImporter(ctx, t, cfg, img) })

	if env.shim == "" {
		t.Log("KEDGE_TEST_BINDIR unset: not running containers (make unit, or KEDGE_TEST_BINDIR=$PWD/pkg/embedded/assets/bin go test ./pkg/containerd after make helpers)")
		return
	}

	t.Run("pod via CRI", func(t *testing.T) { runPod(ctx, t, cfg, dir) })

	t.Run("container survives a containerd restart", func(t *testing.T) {
		restartWithContainer(ctx, t, &c, cfg, env.shim)
	})
}

// restartWithContainer runs a container through the containerd client (so
// the shim is found on PATH and runc there too), checks its shim process is
// the executable shim, stops containerd, checks the container still runs,
// starts a new containerd, finds the task again and cleans up. *c is the
// running containerd, before and after.
func restartWithContainer(ctx context.Context, t *testing.T, c **Containerd, cfg Config, shim string) {
	id := "kedge-test-" + strconv.Itoa(os.Getpid())
	nctx := namespaces.WithNamespace(ctx, Namespace)
	cl, err := client.New(cfg.Address, client.WithDefaultNamespace(Namespace))
	mustf(t, err, "client")
	image, err := cl.GetImage(nctx, dockerImage)
	mustf(t, err, "image %s", dockerImage)
	ctr, err := cl.NewContainer(nctx, id,
		client.WithNewSnapshot(id, image),
		client.WithNewSpec(oci.WithImageConfig(image), oci.WithCgroup("/"+id)),
		// runc's state in the test's directory; runc itself from PATH.
		client.WithRuntime(RuntimeType, &options.Options{Root: filepath.Join(cfg.State, "runc")}),
	)
	mustf(t, err, "new container")
	t.Cleanup(func() { removeContainer(t, cfg.Address, id) })
	task, err := ctr.NewTask(nctx, cio.NullIO)
	mustf(t, err, "new task")
	mustf(t, task.Start(nctx), "start task")
	pid := int(task.Pid())
	shimPID := parentPID(pid)
	t.Logf("container pid %d, shim pid %d (%s): RSS %.1f MiB, anonymous %.1f MiB",
		pid, shimPID, exeOf(shimPID), float64(rssKiB(shimPID))/1024, float64(anonKiB(shimPID))/1024)
	if exe := exeOf(shimPID); exe != shim {
		t.Errorf("the container's parent runs %s, want the shim %s", exe, shim)
	}
	cl.Close()

	stopContainerd(t, *c)
	if err := syscall.Kill(pid, 0); err != nil {
		t.Errorf("container process %d gone after containerd stopped: %v", pid, err)
	}
	*c = startContainerd(t, cfg)

	cl, err = client.New(cfg.Address, client.WithDefaultNamespace(Namespace))
	mustf(t, err, "client after restart")
	defer cl.Close()
	ctr, err = cl.LoadContainer(nctx, id)
	mustf(t, err, "load container after restart")
	task, err = ctr.Task(nctx, nil)
	mustf(t, err, "task after restart")
	st, err := task.Status(nctx)
	mustf(t, err, "task status")
	if st.Status != client.Running || int(task.Pid()) != pid {
		t.Errorf("after restart: task %s pid %d, want running pid %d", st.Status, task.Pid(), pid)
	}
	exited, err := task.Wait(nctx)
	mustf(t, err, "wait")
	mustf(t, task.Kill(nctx, syscall.SIGKILL), "kill")
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Fatal("task did not exit after SIGKILL")
	}
	_, err = task.Delete(nctx)
	mustf(t, err, "delete task")
	mustf(t, ctr.Delete(nctx, client.WithSnapshotCleanup), "delete container")
}

// removeContainer kills and deletes what is left of a test container.
func removeContainer(t *testing.T, address, id string) {
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), Namespace), 20*time.Second)
	defer cancel()
	cl, err := client.New(address)
	if err != nil {
		t.Logf("cleanup of %s: %v", id, err)
		return
	}
	defer cl.Close()
	ctr, err := cl.LoadContainer(ctx, id)
	if err != nil {
		return // deleted by the test
	}
	if task, err := ctr.Task(ctx, nil); err == nil {
		if _, err := task.Delete(ctx, client.WithProcessKill); err != nil {
			t.Logf("cleanup of %s: delete task: %v", id, err)
		}
	}
	if err := ctr.Delete(ctx, client.WithSnapshotCleanup); err != nil {
		t.Logf("cleanup of %s: delete container: %v", id, err)
	}
}

// runPod runs a pod as the kubelet would: a host-network sandbox from the
// pinned sandbox image and one container with a negative oom_score_adj
// (runc refuses it without CAP_SYS_RESOURCE unless containerd restricts it).
func runPod(ctx context.Context, t *testing.T, cfg Config, logDir string) {
	rs, _ := criClient(t, cfg.Address)
	cgroupParent := "/kedge-test-pod-" + strconv.Itoa(os.Getpid()) // as the kubelet's /kubepods/…/pod<uid>
	t.Cleanup(func() { removeCgroup(cgroupParent) })
	sbConfig := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: "sleeper", Namespace: "default", Uid: "kedge-test-pod"},
		LogDirectory: logDir,
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			CgroupParent: cgroupParent,
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE},
			},
		},
	}
	sb, err := rs.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: sbConfig})
	mustf(t, err, "RunPodSandbox")
	defer func() {
		_, err := rs.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: sb.PodSandboxId})
		mustf(t, err, "StopPodSandbox")
		_, err = rs.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: sb.PodSandboxId})
		mustf(t, err, "RemovePodSandbox")
	}()
	ctr, err := rs.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
		PodSandboxId:  sb.PodSandboxId,
		SandboxConfig: sbConfig,
		Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: "sleeper"},
			Image:    &runtimeapi.ImageSpec{Image: dockerImage},
			LogPath:  "sleeper.log",
			Linux: &runtimeapi.LinuxContainerConfig{
				Resources: &runtimeapi.LinuxContainerResources{OomScoreAdj: -997},
			},
		},
	})
	mustf(t, err, "CreateContainer")
	_, err = rs.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: ctr.ContainerId})
	mustf(t, err, "StartContainer")
	st, err := rs.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: ctr.ContainerId})
	mustf(t, err, "ContainerStatus")
	if st.Status.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Errorf("container state %v, want running", st.Status.State)
	}
	_, err = rs.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: ctr.ContainerId, Timeout: 5})
	mustf(t, err, "StopContainer")
	_, err = rs.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: ctr.ContainerId})
	mustf(t, err, "RemoveContainer")
}

// removeCgroup removes an (empty) cgroup from every hierarchy.
func removeCgroup(path string) {
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*" + path)
	if d := "/sys/fs/cgroup" + path; !slices.Contains(dirs, d) {
		dirs = append(dirs, d) // cgroup v2
	}
	for _, d := range dirs {
		_ = os.Remove(d)
	}
}

// parentPID reads PPid of a process.
func parentPID(pid int) int {
	raw, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "PPid:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return 0
}

// exeOf is the executable of a process.
func exeOf(pid int) string {
	exe, _ := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe")
	return exe
}
