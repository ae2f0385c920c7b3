package images

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// RefLabel is the image label holding the reference a stand-in was built
// for: each reference gets its own image (and image ID), as upstream's
// tags are different images (agnhost:2.55 and agnhost:2.63.0, nginx:1.15-4
// and nginx:1.27-0 …), which specs that update a pod's image rely on.
const RefLabel = "io.kedge.conformance.ref"

// defaultPath is the PATH of every stand-in (Debian's and Alpine's).
const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Builder builds the stand-ins. Its fields are inputs; the layers it makes
// are kept for the next image.
type Builder struct {
	// Tools is the directory of the programs scripts/conformance-tools.sh
	// built: agnhost, nonewprivs, sample-apiserver, etcd, coredns.
	Tools string
	// Kubernetes is the k8s.io/kubernetes module's directory (its
	// test/images/<name>/ files: porter's certificate, kitten's html/ …).
	Kubernetes string
	// PauseTar is kedge's pause image (an image tarball, make helpers).
	PauseTar string

	debian  string // the Debian rootfs
	base    v1.Layer
	agnhost []v1.Layer
}

// Image is a stand-in tagged with the reference the suite asks for.
type Image struct {
	// Ref is the reference, e.g. registry.k8s.io/e2e-test-images/agnhost:2.63.0.
	Ref string
	// Standin names the recipe (the repository's last path element).
	Standin string
	// Image is the image.
	Image v1.Image
}

// recipes maps a repository's last path element to the function that
// builds its stand-in.
var recipes = map[string]func(b *Builder) (v1.Image, error){
	"agnhost":           (*Builder).agnhostImage,
	"busybox":           (*Builder).busyboxImage,
	"pause":             (*Builder).pauseImage,
	"nginx":             (*Builder).nginxImage,
	"kitten":            func(b *Builder) (v1.Image, error) { return b.webserverImage("kitten") },
	"nautilus":          func(b *Builder) (v1.Image, error) { return b.webserverImage("nautilus") },
	"nonewprivs":        (*Builder).nonewprivsImage,
	"nonroot":           (*Builder).nonrootImage,
	"sample-apiserver":  (*Builder).sampleAPIServerImage,
	"etcd":              (*Builder).etcdImage,
	"glibc-dns-testing": (*Builder).glibcDNSImage,
}

// Standins lists the repositories (last path element) there is a recipe for.
func Standins() []string {
	var out []string
	for k := range recipes {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Build builds a stand-in for each reference of registry (e.g.
// "registry.k8s.io") in refs that has a recipe; the others are returned in
// skipped. It fails on the first image that cannot be built.
func (b *Builder) Build(registry string, refs []string) (built []Image, skipped []string, err error) {
	for _, ref := range refs {
		tag, err := name.NewTag(ref, name.StrictValidation)
		if err != nil {
			return nil, nil, fmt.Errorf("image reference %q: %w", ref, err)
		}
		recipe := recipes[path.Base(tag.RepositoryStr())]
		if tag.RegistryStr() != registry || recipe == nil {
			skipped = append(skipped, ref)
			continue
		}
		img, err := recipe(b)
		if err != nil {
			return nil, nil, fmt.Errorf("stand-in for %s: %w", ref, err)
		}
		cfg, err := img.ConfigFile()
		if err != nil {
			return nil, nil, err
		}
		c := cfg.Config.DeepCopy()
		if c.Labels == nil {
			c.Labels = map[string]string{}
		}
		c.Labels[RefLabel] = ref
		if img, err = mutate.Config(img, *c); err != nil {
			return nil, nil, err
		}
		built = append(built, Image{Ref: ref, Standin: path.Base(tag.RepositoryStr()), Image: img})
	}
	return built, skipped, nil
}

// image is an image of layers with config c, for linux/GOARCH.
func image(c v1.Config, layers ...v1.Layer) (v1.Image, error) {
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Config = "linux", runtime.GOARCH, c
	if len(cf.Config.Env) == 0 {
		cf.Config.Env = []string{defaultPath}
	}
	return mutate.ConfigFile(img, cf)
}

// baseLayer is the Debian rootfs as a layer, shared by every stand-in but
// busybox and pause (the registry and each node store it once).
func (b *Builder) baseLayer() (v1.Layer, error) {
	if b.base != nil {
		return b.base, nil
	}
	dir, err := debianRootfs()
	if err != nil {
		return nil, err
	}
	stamp, err := os.ReadFile(dir + ".stamp")
	if err != nil {
		return nil, err
	}
	b.debian = dir
	b.base, err = treeLayer(dir, "debian", string(stamp), skipInBase)
	return b.base, err
}

// tool reads a program scripts/conformance-tools.sh built.
func (b *Builder) tool(name string) ([]byte, error) {
	raw, err := os.ReadFile(filepath.Join(b.Tools, name))
	if err != nil {
		return nil, fmt.Errorf("%w (run scripts/conformance-tools.sh)", err)
	}
	return raw, nil
}

// k8sFile reads a file of the k8s.io/kubernetes module.
func (b *Builder) k8sFile(rel string) ([]byte, error) {
	return os.ReadFile(filepath.Join(b.Kubernetes, rel))
}

// withBase is the base layer followed by a layer of files.
func (b *Builder) withBase(files ...File) ([]v1.Layer, error) {
	base, err := b.baseLayer()
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return []v1.Layer{base}, nil
	}
	top, err := LayerOf(files)
	if err != nil {
		return nil, err
	}
	return []v1.Layer{base, top}, nil
}

// pauseImage is kedge's own pause (cmd/pause, the image the kubelet's pod
// sandboxes run), under the suite's name.
func (b *Builder) pauseImage() (v1.Image, error) {
	img, err := tarball.ImageFromPath(b.PauseTar, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w (run make helpers)", b.PauseTar, err)
	}
	return img, nil
}

// program is a stand-in of one Go program from Tools at at (the
// entrypoint, unless cmd is given) over the base.
func (b *Builder) program(tool, at string, mode os.FileMode, c v1.Config) (v1.Image, error) {
	raw, err := b.tool(tool)
	if err != nil {
		return nil, err
	}
	layers, err := b.withBase(File{Path: at, Mode: mode, Data: raw})
	if err != nil {
		return nil, err
	}
	return image(c, layers...)
}

// nonewprivsImage: test/images/nonewprivs (nnp, setuid root, prints its
// effective uid).
func (b *Builder) nonewprivsImage() (v1.Image, error) {
	return b.program("nonewprivs", "usr/local/bin/nnp", 0o755|os.ModeSetuid, v1.Config{Cmd: []string{"nnp"}})
}

// sampleAPIServerImage: k8s.io/sample-apiserver at /sample-apiserver.
func (b *Builder) sampleAPIServerImage() (v1.Image, error) {
	return b.program("sample-apiserver", "sample-apiserver", 0o755, v1.Config{Entrypoint: []string{"/sample-apiserver"}})
}

// etcdImage: the etcd kedge embeds, as /usr/local/bin/etcd (the path the
// aggregator spec runs).
func (b *Builder) etcdImage() (v1.Image, error) {
	return b.program("etcd", "usr/local/bin/etcd", 0o755, v1.Config{Cmd: []string{"/usr/local/bin/etcd"}})
}

// glibcDNSImage: test/images/glibc-dns-testing, Debian with dig and
// nslookup (the base has them) and /coredns.
func (b *Builder) glibcDNSImage() (v1.Image, error) {
	return b.program("coredns", "coredns", 0o755, v1.Config{Cmd: []string{"bash"}})
}

// nonrootImage: test/images/nonroot, the base run as user 1234.
func (b *Builder) nonrootImage() (v1.Image, error) {
	layers, err := b.withBase()
	if err != nil {
		return nil, err
	}
	return image(v1.Config{User: "1234", Cmd: []string{"bash"}}, layers...)
}

// nginxImage: Debian's nginx (nginx-light) in the foreground, serving its
// default page on port 80, as the nginx images do.
func (b *Builder) nginxImage() (v1.Image, error) {
	layers, err := b.withBase()
	if err != nil {
		return nil, err
	}
	return image(v1.Config{Cmd: []string{"nginx", "-g", "daemon off;"}, StopSignal: "SIGQUIT",
		ExposedPorts: map[string]struct{}{"80/tcp": {}}}, layers...)
}

// webserverImage: kitten and nautilus, agnhost serving the files of
// test/images/<name>/html from / (agnhost test-webserver).
func (b *Builder) webserverImage(name string) (v1.Image, error) {
	agn, err := b.agnhostLayers()
	if err != nil {
		return nil, err
	}
	var files []File
	for _, f := range []string{name + ".jpg", "data.json"} {
		raw, err := b.k8sFile("test/images/" + name + "/html/" + f)
		if err != nil {
			return nil, err
		}
		files = append(files, File{Path: f, Mode: 0o644, Data: raw})
	}
	top, err := LayerOf(files)
	if err != nil {
		return nil, err
	}
	c := agnhostConfig()
	c.Cmd = []string{"test-webserver"}
	return image(c, append(agn, top)...)
}

// agnhostConfig is test/images/agnhost/Dockerfile's config.
func agnhostConfig() v1.Config {
	ports := map[string]struct{}{}
	for _, p := range []string{"80", "8080", "8081", "9376", "5000"} {
		ports[p+"/tcp"] = struct{}{}
	}
	return v1.Config{Entrypoint: []string{"/agnhost"}, Cmd: []string{"pause"}, ExposedPorts: ports}
}

// agnhostImage: test/images/agnhost/Dockerfile over Debian (agnhostLayers).
func (b *Builder) agnhostImage() (v1.Image, error) {
	layers, err := b.agnhostLayers()
	if err != nil {
		return nil, err
	}
	return image(agnhostConfig(), layers...)
}

// agnhostLayers are the base and agnhost's own layer: /agnhost and the
// /agnhost-2 link to it, porter's /localhost.crt and /localhost.key,
// /uploads (netexec), /coredns, the user user-defined-in-image (uid 1000)
// in the group group-defined-in-image (gid 50000), and links to busybox
// for the applets Alpine's busybox has and Debian has no program for
// (upstream's base is Alpine: its sh tools are busybox's).
func (b *Builder) agnhostLayers() ([]v1.Layer, error) {
	if b.agnhost != nil {
		return b.agnhost, nil
	}
	base, err := b.baseLayer()
	if err != nil {
		return nil, err
	}
	files := []File{{Path: "uploads", Dir: true, Mode: 0o755}, {Path: "agnhost-2", Link: "agnhost"},
		{Path: "home/user-defined-in-image", Dir: true, Mode: 0o755, UID: 1000, GID: 1000}}
	for _, t := range []string{"agnhost", "coredns"} {
		raw, err := b.tool(t)
		if err != nil {
			return nil, err
		}
		files = append(files, File{Path: t, Mode: 0o755, Data: raw})
	}
	for _, f := range []string{"localhost.crt", "localhost.key"} {
		raw, err := b.k8sFile("test/images/agnhost/porter/" + f)
		if err != nil {
			return nil, err
		}
		files = append(files, File{Path: f, Mode: 0o644, Data: raw})
	}
	for file, add := range map[string]string{
		"etc/passwd": "user-defined-in-image:x:1000:1000:Linux User,,,:/home/user-defined-in-image:/bin/sh\n",
		"etc/group":  "user-defined-in-image:x:1000:\ngroup-defined-in-image:x:50000:user-defined-in-image\n",
	} {
		raw, err := os.ReadFile(filepath.Join(b.debian, file))
		if err != nil {
			return nil, err
		}
		files = append(files, File{Path: file, Mode: 0o644, Data: append(raw, add...)})
	}
	files = append(files, File{Path: "etc/os-release", Mode: 0o644, Data: []byte(alpineStandinOSRelease)})
	applets, err := busyboxApplets(b.debian)
	if err != nil {
		return nil, err
	}
	for _, a := range applets {
		if !hasProgram(b.debian, a) {
			files = append(files, File{Path: "usr/local/bin/" + a, Link: "/bin/busybox"})
		}
	}
	top, err := LayerOf(files)
	if err != nil {
		return nil, err
	}
	b.agnhost = []v1.Layer{base, top}
	return b.agnhost, nil
}

// alpineStandinOSRelease is the /etc/os-release of the agnhost family
// (agnhost, kitten, nautilus): upstream builds them over Alpine Linux, and
// the image volume spec tells the mounted image (kitten) from the
// container's (busybox) by "Alpine Linux" in that file. It says what the
// stand-in is: Debian's files, standing in for an Alpine Linux image.
const alpineStandinOSRelease = `PRETTY_NAME="Debian GNU/Linux 12 (bookworm): kedge's conformance stand-in for an Alpine Linux based image"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
VARIANT="stand-in for an Alpine Linux based image"
VARIANT_ID=kedge-conformance-standin
`

// hasProgram reports whether the rootfs has a program of that name on
// the default PATH.
func hasProgram(root, prog string) bool {
	for _, dir := range strings.Split(strings.TrimPrefix(defaultPath, "PATH="), ":") {
		if _, err := os.Lstat(filepath.Join(root, dir, prog)); err == nil {
			return true
		}
	}
	return false
}
