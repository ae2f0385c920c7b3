package baseline

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/kedge-io/kedge/pkg/killall"
)

// cleanupConfig is how `kedge killall`'s code undoes what the node leaves
// behind once its processes are gone: the shims of this node's containerd
// and the containers under them, the mounts under its directories, the
// pods' network namespace files, cni0 and flannel.1, the KUBE-/CNI-/FLANNEL
// iptables rules and host-local's reservations. kedge's own server and agent
// processes keep running: a baseline Node runs beside a kedge server.
func (n node) cleanupConfig() killall.Config {
	return killall.Config{
		DataDir:           filepath.Dir(n.dir),
		RunDir:            n.opts.RunDir,
		KubeletDir:        n.opts.KubeletRootDir,
		ContainerdAddress: n.containerdAddress(),
		KeepKedge:         true,
	}
}

// shimPIDs are the processes that are shims of the containerd at address.
func shimPIDs(address string) []int {
	var out []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(cmdline) == 0 {
			continue
		}
		if killall.IsShimOf(strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00"), address) {
			out = append(out, pid)
		}
	}
	return out
}
