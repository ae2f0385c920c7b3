package registries

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/kedge-io/kedge/pkg/component"
)

// ProxyConfig configures the image proxy.
type ProxyConfig struct {
	// Registries are the node's mirrors; the proxy acts on those with rewrites.
	Registries Registries
	// HostDir is containerd's registry config_path, where the proxy writes
	// the host directories of RewriteHost names.
	HostDir string
	// Socket is where the proxy serves the CRI image service (the kubelet's
	// image service endpoint).
	Socket string
	// Containerd is containerd's socket (its CRI plugin serves there) and
	// Namespace the CRI plugin's containerd namespace.
	Containerd string
	Namespace  string
	Log        *slog.Logger
}

// ImageProxy serves the CRI image service to the kubelet on its own socket
// and passes every call to containerd's CRI plugin, but for pulls of images
// whose registry's mirror has rewrites, which containerd does not implement:
// those it pulls under a name in RewriteHost(registry), whose host
// directory lists only the mirror's endpoints, and names the result as the
// kubelet asked (the image keeps its original name, as with k3s). When that
// fails, the registry itself is asked for the original name.
type ImageProxy struct {
	component.Background
	cfg    ProxyConfig
	cl     *client.Client
	images runtimeapi.ImageServiceClient
	srv    *grpc.Server
	runtimeapi.UnimplementedImageServiceServer

	mu    sync.Mutex
	pulls map[string]*sync.Mutex // one rewritten pull of an image at a time
}

var _ component.Component = (*ImageProxy)(nil)
var _ runtimeapi.ImageServiceServer = (*ImageProxy)(nil)

// NewImageProxy returns the proxy; nothing runs until Start.
func NewImageProxy(cfg ProxyConfig) *ImageProxy { return &ImageProxy{cfg: cfg} }

// Name implements component.Component.
func (*ImageProxy) Name() string { return "image-proxy" }

// Start connects to containerd and serves Socket (0600, replacing a stale
// one); without rewrites it does nothing (the kubelet pulls from containerd).
func (p *ImageProxy) Start(ctx context.Context) error {
	if !p.cfg.Registries.HasRewrites() {
		return nil
	}
	cl, err := client.New(p.cfg.Containerd, client.WithDefaultNamespace(p.cfg.Namespace))
	if err != nil {
		return fmt.Errorf("containerd at %s: %w", p.cfg.Containerd, err)
	}
	p.cl = cl
	p.cfg.Log = p.cfg.Log.With("component", p.Name())
	p.images = runtimeapi.NewImageServiceClient(cl.Conn().(*grpc.ClientConn))
	if err := os.MkdirAll(filepath.Dir(p.cfg.Socket), 0o711); err != nil {
		return fmt.Errorf("socket directory: %w", err)
	}
	if err := os.Remove(p.cfg.Socket); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("stale socket %s: %w", p.cfg.Socket, err)
	}
	l, err := net.Listen("unix", p.cfg.Socket)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", p.cfg.Socket, err)
	}
	if err := os.Chmod(p.cfg.Socket, 0o600); err != nil {
		l.Close()
		return fmt.Errorf("socket %s: %w", p.cfg.Socket, err)
	}
	p.srv = grpc.NewServer()
	runtimeapi.RegisterImageServiceServer(p.srv, p)
	p.Context(ctx)
	p.Go(func(context.Context) error { return p.srv.Serve(l) })
	p.cfg.Log.Info("serving the CRI image service with registry rewrites", "socket", p.cfg.Socket, "registries", p.cfg.Registries.source())
	return nil
}

// Ready implements component.Component: Start listens already.
func (*ImageProxy) Ready(context.Context) error { return nil }

// Stop ends the server (a pull in progress is cut off) and the client.
func (p *ImageProxy) Stop(ctx context.Context) error {
	if p.srv != nil {
		p.srv.Stop()
	}
	err := p.Background.Stop(ctx)
	if p.cl != nil {
		p.cl.Close()
	}
	return err
}

// ListImages implements runtimeapi.ImageServiceServer.
func (p *ImageProxy) ListImages(ctx context.Context, r *runtimeapi.ListImagesRequest) (*runtimeapi.ListImagesResponse, error) {
	return p.images.ListImages(ctx, r)
}

// StreamImages implements runtimeapi.ImageServiceServer.
func (p *ImageProxy) StreamImages(r *runtimeapi.StreamImagesRequest, out grpc.ServerStreamingServer[runtimeapi.StreamImagesResponse]) error {
	in, err := p.images.StreamImages(out.Context(), r)
	if err != nil {
		return err
	}
	for {
		m, err := in.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return err
		}
		if err := out.Send(m); err != nil {
			return err
		}
	}
}

// ImageStatus implements runtimeapi.ImageServiceServer.
func (p *ImageProxy) ImageStatus(ctx context.Context, r *runtimeapi.ImageStatusRequest) (*runtimeapi.ImageStatusResponse, error) {
	return p.images.ImageStatus(ctx, r)
}

// RemoveImage implements runtimeapi.ImageServiceServer.
func (p *ImageProxy) RemoveImage(ctx context.Context, r *runtimeapi.RemoveImageRequest) (*runtimeapi.RemoveImageResponse, error) {
	return p.images.RemoveImage(ctx, r)
}

// ImageFsInfo implements runtimeapi.ImageServiceServer.
func (p *ImageProxy) ImageFsInfo(ctx context.Context, r *runtimeapi.ImageFsInfoRequest) (*runtimeapi.ImageFsInfoResponse, error) {
	return p.images.ImageFsInfo(ctx, r)
}

// PullImage implements runtimeapi.ImageServiceServer: rewritten through the
// mirror's endpoints, then the original name from the registry itself.
func (p *ImageProxy) PullImage(ctx context.Context, r *runtimeapi.PullImageRequest) (*runtimeapi.PullImageResponse, error) {
	plan, ok, err := p.cfg.Registries.planRewrite(r.GetImage().GetImage())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if !ok {
		return p.images.PullImage(ctx, r)
	}
	// The kubelet pulls in parallel, a pod each: two pulls of one image
	// would rename each other's temporary names away.
	unlock := p.lock(plan.image)
	defer unlock()
	if err := p.cfg.Registries.WriteRewriteDir(p.cfg.HostDir, plan.registry); err != nil {
		return nil, err
	}
	rr := proto.Clone(r).(*runtimeapi.PullImageRequest)
	rr.Image.Image = plan.pull
	resp, mirrorErr := p.images.PullImage(ctx, rr)
	if mirrorErr == nil {
		if err := p.rename(ctx, plan, resp.ImageRef); err != nil {
			return nil, fmt.Errorf("pulled %s through the mirror of %s, naming it %s: %w", plan.pull, plan.registry, plan.image, err)
		}
		p.cfg.Log.Info("pulled through a rewriting mirror", "image", plan.image, "as", plan.pullRepo, "rewritten", plan.rewrote)
		return resp, nil
	}
	resp, err = p.images.PullImage(ctx, r)
	if err == nil {
		p.cfg.Log.Info("pulled from the registry itself after its mirrors failed", "image", plan.image, "mirror_error", status.Convert(mirrorErr).Message())
		return resp, nil
	}
	return nil, status.Errorf(status.Code(mirrorErr), "pull %s through the mirror endpoints of %s (as %s): %s; from %s itself: %s",
		plan.image, plan.registry, plan.pull, status.Convert(mirrorErr).Message(), plan.registry, status.Convert(err).Message())
}

// lock serializes the rewritten pulls of image.
func (p *ImageProxy) lock(image string) func() {
	p.mu.Lock()
	if p.pulls == nil {
		p.pulls = map[string]*sync.Mutex{}
	}
	m := p.pulls[image]
	if m == nil {
		m = &sync.Mutex{}
		p.pulls[image] = m
	}
	p.mu.Unlock()
	m.Lock()
	return m.Unlock
}

// rename gives the pulled image the names the kubelet expects (the tag and
// the repository digest of the original name) and removes the pulled names.
func (p *ImageProxy) rename(ctx context.Context, plan rewritePlan, imageID string) error {
	ctx = namespaces.WithNamespace(ctx, p.cfg.Namespace)
	is := p.cl.ImageService()
	pulled, err := is.Get(ctx, plan.pull)
	if err != nil {
		return err
	}
	dgst := pulled.Target.Digest.String()
	names := [][2]string{{plan.pull, plan.image}, {plan.pullRepo + "@" + dgst, plan.repo + "@" + dgst}}
	for _, n := range names {
		src, err := is.Get(ctx, n[0])
		if errdefs.IsNotFound(err) {
			continue
		} else if err != nil {
			return err
		}
		dst := images.Image{Name: n[1], Target: src.Target, Labels: src.Labels}
		if _, err := is.Create(ctx, dst); errdefs.IsAlreadyExists(err) {
			_, err = is.Update(ctx, dst)
			if err != nil {
				return err
			}
		} else if err != nil {
			return err
		}
		if n[0] != n[1] {
			if err := is.Delete(ctx, n[0]); err != nil && !errdefs.IsNotFound(err) {
				return err
			}
		}
	}
	// The CRI plugin follows containerd's image events asynchronously:
	// wait until it reports the original name and no longer the pulled one,
	// so that nobody sees the temporary names after the pull returns.
	deadline := time.Now().Add(10 * time.Second)
	for {
		orig, err := p.images.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: plan.image}})
		named := err == nil && orig.GetImage() != nil && orig.GetImage().GetId() == imageID
		if named {
			gone := 0
			for _, n := range names {
				var tmp *runtimeapi.ImageStatusResponse
				tmp, err = p.images.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: n[0]}})
				if err == nil && tmp.GetImage() == nil {
					gone++
				}
			}
			if gone == len(names) {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the CRI plugin does not report %s as %s, without %s, yet (%v)", plan.image, imageID, plan.pullRepo, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}
