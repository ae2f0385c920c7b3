package image

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// BaseCache holds the Debian rootfs the image's build stage starts from
// (package/Dockerfile's BASE), made once with debootstrap: no registry is
// reachable here to pull debian:bookworm-slim from. It holds the packages
// the build stage installs already, so that TestRootfs can run
// package/rootfs.sh in it without docker.
const BaseCache = "/var/cache/kedge-test/image-debian"

// BaseImage is the name the test imports BaseCache as.
const BaseImage = "kedge-debian:bookworm"

// basePackages are installed besides the minimal base: what the
// Dockerfile's build stage installs.
var basePackages = []string{"iptables", "nftables", "mount", "ca-certificates"}

// debianMirror is where debootstrap fetches the packages.
const debianMirror = "http://deb.debian.org/debian"

// ensureBase makes BaseCache with debootstrap unless it is there already
// (its stamp file says it is complete).
func ensureBase() (string, error) {
	stamp := "bookworm minbase " + strings.Join(basePackages, ",")
	if b, err := os.ReadFile(BaseCache + ".stamp"); err == nil && string(b) == stamp {
		if _, err := os.Stat(filepath.Join(BaseCache, "usr/bin/apt-get")); err == nil {
			return BaseCache, nil
		}
	}
	if _, err := exec.LookPath("debootstrap"); err != nil {
		return "", fmt.Errorf("%s is missing and debootstrap is not installed (Debian: apt-get install debootstrap)", BaseCache)
	}
	tmp := BaseCache + ".tmp"
	os.RemoveAll(tmp)
	if err := os.MkdirAll(filepath.Dir(tmp), 0o755); err != nil {
		return "", err
	}
	out, err := exec.Command("debootstrap", "--variant=minbase", "--include="+strings.Join(basePackages, ","),
		"bookworm", tmp, debianMirror).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("debootstrap: %v\n%s", err, tail(string(out), 20))
	}
	os.RemoveAll(BaseCache)
	if err := os.Rename(tmp, BaseCache); err != nil {
		return "", err
	}
	return BaseCache, os.WriteFile(BaseCache+".stamp", []byte(stamp), 0o644)
}

// importBase imports the rootfs as BaseImage into d.
func (d *daemon) importBase(rootfs string) error {
	tar := exec.Command("tar", "-C", rootfs, "-c", ".")
	imp := exec.Command("docker", "import", "-", BaseImage)
	imp.Env = d.env()
	pipe, err := tar.StdoutPipe()
	if err != nil {
		return err
	}
	imp.Stdin = pipe
	if err := tar.Start(); err != nil {
		return err
	}
	out, err := imp.CombinedOutput()
	if werr := tar.Wait(); err == nil && werr != nil {
		err = fmt.Errorf("tar %s: %w", rootfs, werr)
	}
	if err != nil {
		return fmt.Errorf("docker import %s: %v\n%s", rootfs, err, out)
	}
	return nil
}
