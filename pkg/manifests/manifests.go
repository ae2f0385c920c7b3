// Package manifests applies kedge's built-in add-on manifests (the
// top-level manifests package, rendered with the cluster's settings) and
// every *.yaml a user drops into <data-dir>/server/manifests, with
// server-side apply. It re-applies a user file when it changes. A built-in
// named in Config.Disabled (--disable) is not applied, and the objects kedge
// applied from it before are deleted; a user file with a <name>.skip file
// beside it (coredns-custom.yaml.skip) is not applied.
//
//	c := manifests.New(manifests.Config{Kubeconfig: admin, Dir: dir, Values: manifests.Values{ClusterDNS: "10.43.0.10"}})
//	_ = c.Start(ctx)
//	_ = c.Ready(ctx) // the built-ins are applied
package manifests

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"text/template"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"

	builtin "github.com/kedge-io/kedge/manifests"
	"github.com/kedge-io/kedge/pkg/component"
)

// FieldManager is the server-side apply manager name of kedge's manifests.
const FieldManager = "kedge"

// SkipSuffix marks a user manifest not to apply: a file named
// <manifest>.yaml.skip beside it, as k3s users know.
const SkipSuffix = ".skip"

// Builtins are the names of the built-in manifests (coredns for
// coredns.yaml), the values --disable accepts for them.
func Builtins() []string {
	entries, _ := fs.Glob(builtin.FS, "*.yaml")
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, strings.TrimSuffix(e, ".yaml"))
	}
	return names
}

// Values are the cluster settings the built-in manifests are rendered with.
type Values struct {
	ClusterDNS    string
	ClusterDomain string
}

// Config describes the manifests controller.
type Config struct {
	Kubeconfig string // an admin client
	Dir        string // user manifests, <data-dir>/server/manifests
	Values     Values
	// Disabled are the built-in manifests (by name: "coredns" for
	// coredns.yaml) not to apply (--disable).
	Disabled []string
	Poll     time.Duration // how often Dir is scanned for changes; default 10 s
	Log      *slog.Logger
	// Record, if set, is the file where the controller records what it
	// applied of the built-ins (a hash), for AppliedBefore.
	Record string
}

// Controller applies the manifests.
type Controller struct {
	cfg     Config
	applier *applier
	cancel  context.CancelFunc
	ready   chan struct{}
	errc    chan error
}

var _ component.Component = (*Controller)(nil)
var _ component.Failer = (*Controller)(nil)

// New returns the controller; nothing runs until Start.
func New(cfg Config) *Controller {
	if cfg.Poll == 0 {
		cfg.Poll = 10 * time.Second
	}
	return &Controller{cfg: cfg, ready: make(chan struct{}), errc: make(chan error, 1)}
}

// Name implements component.Component.
func (*Controller) Name() string { return "manifests" }

// Start renders the built-ins and applies them, then watches Dir in the background.
func (c *Controller) Start(ctx context.Context) error {
	docs, err := Render(builtin.FS, c.cfg.Values)
	if err != nil {
		return err
	}
	a, err := newApplier(c.cfg.Kubeconfig)
	if err != nil {
		return err
	}
	c.applier = a
	if err := os.MkdirAll(c.cfg.Dir, 0o700); err != nil {
		return fmt.Errorf("manifests dir: %w", err)
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	c.cancel = cancel
	go func() {
		for path, doc := range docs {
			name := strings.TrimSuffix(path, ".yaml")
			do, what := a.apply, "applied"
			if slices.Contains(c.cfg.Disabled, name) {
				do, what = a.remove, "removed (--disable "+name+")"
			}
			if err := retry(runCtx, func() error { return do(runCtx, doc) }); err != nil {
				if runCtx.Err() == nil {
					c.errc <- fmt.Errorf("built-in manifest %s: %w", path, err)
				}
				return
			}
			c.cfg.Log.Debug("built-in manifest "+what, "component", "manifests", "manifest", path)
		}
		if err := c.record(docs); err != nil {
			c.cfg.Log.Warn("could not record the built-in manifests applied; the next start waits for them again", "component", "manifests", "file", c.cfg.Record, "err", err)
		}
		close(c.ready)
		c.watch(runCtx)
	}()
	return nil
}

// watch applies each user manifest when it is new or changed.
func (c *Controller) watch(ctx context.Context) {
	applied := map[string]string{} // path → content applied
	for {
		files, _ := filepath.Glob(filepath.Join(c.cfg.Dir, "*.yaml"))
		sort.Strings(files)
		for _, f := range files {
			if _, err := os.Stat(f + SkipSuffix); err == nil {
				if _, was := applied[f]; !was {
					c.cfg.Log.Info("manifest skipped", "component", "manifests", "file", f, "because", f+SkipSuffix)
					applied[f] = "" // logged once; a file never applies as empty
				}
				continue
			}
			raw, err := os.ReadFile(f)
			if err != nil || applied[f] == string(raw) {
				continue
			}
			if err := c.applier.apply(ctx, raw); err != nil {
				c.cfg.Log.Error("manifest not applied", "component", "manifests", "file", f, "err", err)
			} else {
				c.cfg.Log.Info("manifest applied", "component", "manifests", "file", f)
			}
			applied[f] = string(raw) // a failing file is retried when it changes
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(c.cfg.Poll):
		}
	}
}

// Ready waits until the built-in manifests are applied.
func (c *Controller) Ready(ctx context.Context) error {
	select {
	case <-c.ready:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("applying built-in manifests: %w", ctx.Err())
	}
}

// Err reports a built-in manifest that could not be applied.
func (c *Controller) Err() <-chan error { return c.errc }

// Stop stops watching the manifests dir.
func (c *Controller) Stop(context.Context) error {
	if c.cancel != nil {
		c.cancel()
	}
	return nil
}

// check reports a value that would not render as itself in YAML (with a
// newline and keys, it would change the manifest around it); "" passes.
func (v Values) check() error {
	if v.ClusterDNS != "" && net.ParseIP(v.ClusterDNS) == nil {
		return fmt.Errorf("manifests: Values.ClusterDNS %q: not an IP address", v.ClusterDNS)
	}
	if errs := validation.IsDNS1123Subdomain(v.ClusterDomain); v.ClusterDomain != "" && len(errs) > 0 {
		return fmt.Errorf("manifests: Values.ClusterDomain %q: %s", v.ClusterDomain, strings.Join(errs, "; "))
	}
	return nil
}

// Render executes every *.yaml template of fsys with v; each result must
// decode as objects to apply (see decode).
func Render(fsys fs.FS, v Values) (map[string][]byte, error) {
	if err := v.check(); err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	err := fs.WalkDir(fsys, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".yaml") {
			return err
		}
		raw, err := fs.ReadFile(fsys, path)
		if err != nil {
			return err
		}
		tmpl, err := template.New(path).Option("missingkey=error").Parse(string(raw))
		if err != nil {
			return fmt.Errorf("manifest %s: %w", path, err)
		}
		var b bytes.Buffer
		if err := tmpl.Execute(&b, v); err != nil {
			return fmt.Errorf("manifest %s: %w", path, err)
		}
		if _, err := decode(b.Bytes()); err != nil {
			return fmt.Errorf("manifest %s: %w", path, err)
		}
		out[path] = b.Bytes()
		return nil
	})
	return out, err
}

// applierQPS is the client-side rate limit of the applier's client.
const applierQPS = 100

// applier server-side-applies multi-document YAML.
type applier struct {
	dyn    dynamic.Interface
	mapper *restmapper.DeferredDiscoveryRESTMapper
}

func newApplier(kubeconfig string) (*applier, error) {
	rest, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
	}
	// kedge's own client over loopback: client-go's default 5 QPS (burst
	// 10) made the discovery and the built-ins (the RBAC the node waits
	// for) take ~3 s of every fresh start. Priority-and-fairness still
	// bounds it at the apiserver.
	rest.QPS, rest.Burst = applierQPS, 2*applierQPS
	dc, err := discovery.NewDiscoveryClientForConfig(rest)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(rest)
	if err != nil {
		return nil, err
	}
	return &applier{dyn: dyn, mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))}, nil
}

// decode splits a YAML (or JSON) stream into its objects, skipping empty
// documents. A document that does not parse, or lacks apiVersion, kind or
// metadata.name, is an error naming it (1 is the first), and no object.
func decode(stream []byte) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(stream), 4096)
	var objs []*unstructured.Unstructured
	for n := 1; ; n++ {
		var obj unstructured.Unstructured
		err := dec.Decode(&obj.Object)
		switch {
		case errors.Is(err, io.EOF):
			return objs, nil
		case err != nil:
			return nil, fmt.Errorf("document %d: %w", n, err)
		case len(obj.Object) == 0:
		case obj.GetAPIVersion() == "" || obj.GetKind() == "" || obj.GetName() == "":
			return nil, fmt.Errorf("document %d: want the strings apiVersion, kind and metadata.name", n)
		default:
			objs = append(objs, &obj)
		}
	}
}

// apply applies every object of a YAML stream, or none if it does not decode.
func (a *applier) apply(ctx context.Context, stream []byte) error {
	objs, err := decode(stream)
	if err != nil {
		return err
	}
	var errs []error
	for _, obj := range objs {
		if err := a.applyOne(ctx, obj); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// remove deletes the objects of a YAML stream that kedge applied (those
// with FieldManager among their managers); an object someone else made
// under the same name stays.
func (a *applier) remove(ctx context.Context, stream []byte) error {
	objs, err := decode(stream)
	if err != nil {
		return err
	}
	var errs []error
	for _, obj := range objs {
		ri, err := a.resource(obj)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		live, err := ri.Get(ctx, obj.GetName(), metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue
		} else if err != nil {
			errs = append(errs, err)
			continue
		}
		if !slices.ContainsFunc(live.GetManagedFields(), func(m metav1.ManagedFieldsEntry) bool { return m.Manager == FieldManager }) {
			continue
		}
		if err := ri.Delete(ctx, obj.GetName(), metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("delete %s %s: %w", obj.GetKind(), obj.GetName(), err))
		}
	}
	return errors.Join(errs...)
}

// resource returns the client of obj's resource (in its namespace).
func (a *applier) resource(obj *unstructured.Unstructured) (dynamic.ResourceInterface, error) {
	gvk := obj.GroupVersionKind()
	mapping, err := a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		a.mapper.Reset()
		return nil, fmt.Errorf("%s %s: %w", gvk.Kind, obj.GetName(), err)
	}
	if mapping.Scope.Name() == "namespace" {
		ns := obj.GetNamespace()
		if ns == "" {
			ns = metav1.NamespaceDefault
		}
		return a.dyn.Resource(mapping.Resource).Namespace(ns), nil
	}
	return a.dyn.Resource(mapping.Resource), nil
}

func (a *applier) applyOne(ctx context.Context, obj *unstructured.Unstructured) error {
	gvk := obj.GroupVersionKind()
	ri, err := a.resource(obj)
	if err != nil {
		return err
	}
	raw, err := obj.MarshalJSON()
	if err != nil {
		return err
	}
	force := true
	if _, err := ri.Patch(ctx, obj.GetName(), types.ApplyPatchType, raw, metav1.PatchOptions{FieldManager: FieldManager, Force: &force}); err != nil {
		return fmt.Errorf("apply %s %s: %w", gvk.Kind, obj.GetName(), err)
	}
	return nil
}

// retry calls f until it succeeds or ctx ends, backing off up to 5 s.
func retry(ctx context.Context, f func() error) error {
	delay := 200 * time.Millisecond
	for {
		err := f()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(delay):
		}
		delay = min(2*delay, 5*time.Second)
	}
}
