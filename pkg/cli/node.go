package cli

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/kedge-io/kedge/pkg/hostinfo"
	"github.com/kedge-io/kedge/pkg/localstorage"
)

// parseNodeIP returns --node-ip, or the default route's source address
// when it is empty.
func parseNodeIP(s string) (net.IP, error) {
	if s == "" {
		return hostinfo.DefaultNodeIP(), nil
	}
	ip := net.ParseIP(s)
	if ip == nil {
		return nil, fmt.Errorf("--node-ip %q: not an IP address", s)
	}
	return ip, nil
}

// parseNodeName returns --node-name lowercased, or the hostname when it is
// empty, checked to be a valid Node name.
func parseNodeName(s string) (string, error) {
	name := strings.ToLower(s)
	if name == "" {
		host, err := os.Hostname()
		if err != nil {
			return "", fmt.Errorf("--node-name: not set and the hostname is unknown: %w", err)
		}
		name = strings.ToLower(host)
	}
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return "", fmt.Errorf("--node-name %q: %s", name, strings.Join(errs, "; "))
	}
	return name, nil
}

// checkKeyValues checks that every --*-arg value is key=value.
func checkKeyValues(flags map[string][]string) error {
	for flag, list := range flags {
		for _, kv := range list {
			if k, _, ok := strings.Cut(kv, "="); !ok || strings.Trim(k, "-+ ") == "" {
				return fmt.Errorf("%s %q: want key=value", flag, kv)
			}
		}
	}
	return nil
}

// registerLocalStorage adds --default-local-storage-path, shared by
// servers and agents.
func registerLocalStorage(fs *pflag.FlagSet, path *string) {
	fs.StringVar(path, "default-local-storage-path", "", "directory of this node's local-path volumes (StorageClass "+localstorage.StorageClassName+"; default <data-dir>/"+localstorage.DefaultDir+")")
}

// parseLocalStoragePath returns --default-local-storage-path as an
// absolute, clean path: <dataDir>/storage when it is empty.
func parseLocalStoragePath(s, dataDir string) (string, error) {
	if s == "" {
		return filepath.Join(dataDir, localstorage.DefaultDir), nil
	}
	abs, err := filepath.Abs(s)
	if err != nil {
		return "", fmt.Errorf("--default-local-storage-path %q: %w", s, err)
	}
	return abs, localstorage.CheckRoot("--default-local-storage-path", abs)
}

// registerNodeMeta adds --node-label, --node-taint and --node-external-ip,
// shared by servers and agents.
func registerNodeMeta(fs *pflag.FlagSet, labels, taints, externalIPs *[]string) {
	fs.StringSliceVar(externalIPs, "node-external-ip", nil, "external address of this node (one IPv4 and one IPv6 at most): the Node's ExternalIP, set by kedge's cloud controller (the kubelet then runs with --cloud-provider=external)")
	fs.StringArrayVar(labels, "node-label", nil, "label of this node as key=value (repeatable): set at registration and kept in sync on every start; a label kedge set and the flag no longer gives is removed, labels set with kubectl stay")
	fs.StringArrayVar(taints, "node-taint", nil, "taint of this node as key[=value]:NoSchedule|PreferNoSchedule|NoExecute (repeatable): set at registration and kept in sync like --node-label")
}
