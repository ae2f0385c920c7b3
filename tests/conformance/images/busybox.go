package images

import (
	"debug/elf"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// busyboxEtc is the busybox image's /etc: the accounts and groups of the
// official busybox image, and NSS from files then DNS.
var busyboxEtc = map[string]string{
	"etc/passwd": `root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
sync:x:4:100:sync:/bin:/bin/sync
mail:x:8:8:mail:/var/spool/mail:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
operator:x:37:37:Operator:/var:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
`,
	"etc/group": `root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
disk:x:6:
lp:x:7:
mail:x:8:
kmem:x:9:
wheel:x:10:root
cdrom:x:11:
dialout:x:18:
floppy:x:19:
video:x:28:
audio:x:29:
tape:x:32:
www-data:x:33:
operator:x:37:
utmp:x:43:
plugdev:x:46:
staff:x:50:
lock:x:54:
netdev:x:82:
users:x:100:
nogroup:x:65534:
`,
	"etc/nsswitch.conf": "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\n",
}

// busyboxImage: the busybox image as upstream's (docker.io/library/busybox,
// the glibc build): one busybox executable, /bin/<applet> links to it for
// every applet, the libraries it links, a few accounts. The executable is
// Debian's busybox package (not busybox-static, whose sh runs the applets
// it has in-process instead of as programs). It differs from upstream's in
// version (Debian's) and applet set (Debian's configuration), and in its
// sh: /bin/sh is Debian's bash (busybox's ash stays /bin/ash). Debian's
// ash, 1.35 and 1.37 alike, drops the environment entries whose names are
// not shell identifiers before it runs a program; the envFrom specs give
// a container names such as "1-data-1" and "#@!data-1" and read them back
// with `sh -c env`, and upstream's image passes them, as bash does.
func (b *Builder) busyboxImage() (v1.Image, error) {
	if _, err := b.baseLayer(); err != nil { // the rootfs busybox comes from
		return nil, err
	}
	files := []File{}
	for _, exe := range []string{"bin/busybox", "bin/bash"} {
		bin, err := os.ReadFile(inRoot(b.debian, exe))
		if err != nil {
			return nil, err
		}
		files = append(files, File{Path: exe, Mode: 0o755, Data: bin})
	}
	for _, d := range []struct {
		path string
		mode os.FileMode
	}{{"tmp", 0o1777}, {"root", 0o700}, {"home", 0o755}, {"var/www", 0o755}, {"var/spool/mail", 0o755}, {"usr/sbin", 0o755}} {
		f := File{Path: d.path, Dir: true, Mode: d.mode.Perm()}
		if d.mode&0o1000 != 0 {
			f.Mode |= os.ModeSticky
		}
		files = append(files, f)
	}
	for p, content := range busyboxEtc {
		files = append(files, File{Path: p, Mode: 0o644, Data: []byte(content)})
	}
	libs := map[string]string{}
	for _, exe := range []string{"bin/busybox", "bin/bash"} {
		l, err := libraries(b.debian, exe)
		if err != nil {
			return nil, err
		}
		maps.Copy(libs, l)
	}
	for at, from := range libs {
		raw, err := os.ReadFile(from)
		if err != nil {
			return nil, err
		}
		files = append(files, File{Path: at, Mode: 0o755, Data: raw})
	}
	applets, err := busyboxApplets(b.debian)
	if err != nil {
		return nil, err
	}
	for _, a := range applets {
		switch a {
		case "busybox":
		case "sh":
			files = append(files, File{Path: "bin/sh", Link: "bash"})
		default:
			files = append(files, File{Path: "bin/" + a, Link: "busybox"})
		}
	}
	layer, err := LayerOf(files)
	if err != nil {
		return nil, err
	}
	return image(v1.Config{Cmd: []string{"sh"}}, layer)
}

// busyboxApplets lists the applets of the rootfs' busybox.
func busyboxApplets(root string) ([]string, error) {
	out, err := exec.Command("chroot", root, "/bin/busybox", "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("chroot %s /bin/busybox --list: %w", root, err)
	}
	return strings.Fields(string(out)), nil
}

// libraries returns the shared libraries the executable at rel (in root)
// loads, its interpreter included, transitively: path in the image → file
// on the host.
func libraries(root, rel string) (map[string]string, error) {
	out := map[string]string{}
	var visit func(file string) error
	visit = func(file string) error {
		f, err := elf.Open(inRoot(root, file))
		if err != nil {
			return err
		}
		defer f.Close()
		for _, p := range f.Progs {
			if p.Type != elf.PT_INTERP {
				continue
			}
			raw := make([]byte, p.Filesz)
			if _, err := p.ReadAt(raw, 0); err != nil {
				return err
			}
			interp := strings.TrimPrefix(strings.TrimRight(string(raw), "\x00"), "/")
			out[interp] = inRoot(root, interp)
		}
		needed, err := f.ImportedLibraries()
		if err != nil {
			return err
		}
		for _, lib := range needed {
			found := ""
			for _, dir := range []string{"lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "lib/aarch64-linux-gnu",
				"usr/lib/aarch64-linux-gnu", "lib", "usr/lib"} {
				if _, err := os.Stat(inRoot(root, filepath.Join(dir, lib))); err == nil {
					found = filepath.Join(dir, lib)
					break
				}
			}
			if found == "" {
				return fmt.Errorf("%s: library %s not found in %s", file, lib, root)
			}
			if _, seen := out[found]; seen {
				continue
			}
			out[found] = inRoot(root, found)
			if err := visit(found); err != nil {
				return err
			}
		}
		return nil
	}
	return out, visit(rel)
}

// inRoot resolves rel in the tree root as a chroot would: symlinks, also
// absolute ones, stay inside root.
func inRoot(root, rel string) string {
	parts := strings.Split(strings.Trim(filepath.ToSlash(rel), "/"), "/")
	cur := ""
	for hops := 0; len(parts) > 0 && hops < 64; {
		p := parts[0]
		parts = parts[1:]
		next := filepath.Join(cur, p)
		if next == ".." || strings.HasPrefix(next, "../") {
			next = "" // /.. is /
		}
		target, err := os.Readlink(filepath.Join(root, next))
		if err != nil {
			cur = next
			continue
		}
		hops++
		if filepath.IsAbs(target) {
			cur = ""
		}
		parts = append(strings.Split(strings.Trim(target, "/"), "/"), parts...)
	}
	return filepath.Join(root, cur)
}
