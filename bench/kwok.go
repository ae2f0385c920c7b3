package bench

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The markers of kwok's fake nodes (sigs.k8s.io/kwok's own convention): kwok
// manages the nodes with KwokNodeAnnotation, and the taint keeps every pod
// off them but those that tolerate it.
const (
	KwokNodeAnnotation = "kwok.x-k8s.io/node"
	KwokNodeValue      = "fake"
	KwokNodeLabel      = "type" // = "kwok": the scale pods' nodeSelector
	// KwokBinary and KwokStages are what scripts/bench-build.sh puts in
	// bench/bin: kwok's controller (its own module's go.mod, not kedge's) and
	// its stages (node-initialize, node-heartbeat-with-lease, pod-ready,
	// pod-complete, pod-delete: those kwokctl runs by default).
	KwokBinary = "kwok"
	KwokStages = "kwok-stages.yaml"
	// KwokLeaseSeconds is the fake nodes' Lease duration (kwokctl's default).
	KwokLeaseSeconds = 40
	// KwokPodCIDR is where kwok takes the fake pods' IPs from.
	KwokPodCIDR = "10.240.0.0/12"
	// ScalePodImage is the fake pods' image: never pulled, nothing runs it.
	ScalePodImage = "registry.k8s.io/pause:3.10"
)

// Kwok runs kwok's controller against a cluster as a process of its own: it
// makes the fake nodes Ready, keeps their Leases, and marks the pods bound
// to them Running, as kubelets would.
type Kwok struct {
	Bin, Stages, Kubeconfig string
	Log                     io.Writer
	cmd                     *exec.Cmd
	exited                  chan struct{}
}

// Start execs kwok; it runs until Stop.
func (k *Kwok) Start() error {
	for _, f := range []string{k.Bin, k.Stages} {
		if _, err := os.Stat(f); err != nil {
			return fmt.Errorf("kwok: %w (run scripts/bench-build.sh)", err)
		}
	}
	k.cmd = exec.Command(k.Bin,
		"--kubeconfig="+k.Kubeconfig,
		"--config="+k.Stages,
		"--manage-all-nodes=false",
		"--manage-nodes-with-annotation-selector="+KwokNodeAnnotation+"="+KwokNodeValue,
		"--node-lease-duration-seconds="+strconv.Itoa(KwokLeaseSeconds),
		"--cidr="+KwokPodCIDR,
		"--node-ip=10.240.0.1")
	k.cmd.Stdout, k.cmd.Stderr = k.Log, k.Log
	// HOME: kwok reads ~/.kwok/kwok.yaml too; the bench's own config only.
	k.cmd.Env = append(os.Environ(), "HOME="+filepath.Dir(k.Stages))
	k.exited = make(chan struct{})
	if err := k.cmd.Start(); err != nil {
		return fmt.Errorf("kwok: %w", err)
	}
	go func() { _ = k.cmd.Wait(); close(k.exited) }()
	return nil
}

// Exited is closed when kwok has exited.
func (k *Kwok) Exited() <-chan struct{} { return k.exited }

// Stop stops kwok (SIGTERM, then SIGKILL after 10 s).
func (k *Kwok) Stop() error {
	if k.cmd == nil || k.cmd.Process == nil {
		return nil
	}
	_ = k.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-k.exited:
		return nil
	case <-time.After(10 * time.Second):
		_ = k.cmd.Process.Kill()
		<-k.exited
		return errors.New("kwok: killed after 10 s")
	}
}

// FakeNode is a Node kwok manages: 32 CPUs, 256 GiB, 110 pods, tainted so
// that only the scale pods go there.
func FakeNode(name string) *corev1.Node {
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("32"),
		corev1.ResourceMemory: resource.MustParse("256Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Annotations: map[string]string{KwokNodeAnnotation: KwokNodeValue},
			Labels: map[string]string{
				KwokNodeLabel:            "kwok",
				"kubernetes.io/hostname": name,
				"kubernetes.io/os":       "linux",
				"kubernetes.io/arch":     "amd64",
			},
		},
		Spec: corev1.NodeSpec{Taints: []corev1.Taint{{Key: KwokNodeAnnotation, Value: KwokNodeValue, Effect: corev1.TaintEffectNoSchedule}}},
		Status: corev1.NodeStatus{
			Capacity:    capacity,
			Allocatable: capacity,
			NodeInfo:    corev1.NodeSystemInfo{KubeletVersion: "kwok", OperatingSystem: "linux", Architecture: "amd64"},
		},
	}
}

// FakePod is a scale pod: it goes to a kwok node only (nodeSelector and
// toleration) and asks for a little CPU and memory, as a small workload does.
func FakePod(name string) *corev1.Pod {
	automount := false
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": "scale"}},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{
				Name: "app", Image: ScalePodImage,
				Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
					corev1.ResourceCPU:    resource.MustParse("10m"),
					corev1.ResourceMemory: resource.MustParse("16Mi"),
				}},
			}},
			NodeSelector:                 map[string]string{KwokNodeLabel: "kwok"},
			Tolerations:                  []corev1.Toleration{{Key: KwokNodeAnnotation, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}},
			AutomountServiceAccountToken: &automount,
		},
	}
}

// RSSAnon sums RssAnon (anonymous resident memory: what no page-out of the
// executable's clean pages can lower) from /proc/<pid>/status of pids.
func (p ProcFS) RSSAnon(pids []int) (uint64, error) {
	var sum uint64
	for _, pid := range pids {
		raw, err := os.ReadFile(filepath.Join(p.Root, strconv.Itoa(pid), "status"))
		if errors.Is(err, os.ErrNotExist) {
			continue // exited meanwhile
		}
		if err != nil {
			return 0, err
		}
		v, err := ParseRSSAnon(string(raw))
		if err != nil {
			return 0, fmt.Errorf("pid %d: %w", pid, err)
		}
		sum += v
	}
	return sum, nil
}

// ParseRSSAnon returns the RssAnon line of a /proc/<pid>/status, in bytes.
func ParseRSSAnon(status string) (uint64, error) {
	for _, line := range strings.Split(status, "\n") {
		rest, ok := strings.CutPrefix(line, "RssAnon:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("status: malformed RssAnon line %q", line)
		}
		kb, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("status: RssAnon: %w", err)
		}
		return kb * 1024, nil
	}
	return 0, errors.New("status: no RssAnon line")
}

// EtcdDBSize returns the size of the etcd database file (member/snap/db)
// below dir: what etcd_mvcc_db_total_size_in_bytes reports.
func EtcdDBSize(dir string) (int64, error) {
	var size int64 = -1
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return nil // a directory that went away meanwhile
		}
		if !d.IsDir() && d.Name() == "db" && filepath.Base(filepath.Dir(path)) == "snap" &&
			filepath.Base(filepath.Dir(filepath.Dir(path))) == "member" {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			size = fi.Size()
			return filepath.SkipAll
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	if size < 0 {
		return 0, fmt.Errorf("no etcd member/snap/db below %s", dir)
	}
	return size, nil
}
