package containerd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/cmd/containerd/server"
	srvconfig "github.com/containerd/containerd/v2/cmd/containerd/server/config"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/plugins/snapshots/overlay/overlayutils"
	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/kedge-io/kedge/pkg/component"
)

// Containerd is the embedded containerd component: containerd's server
// (cmd/containerd/server) with its plugins, CRI included, serving gRPC and
// TTRPC on unix sockets from the kedge process.
//
// In containerd 2.x the listeners belong to server plugins
// (io.containerd.server.v1.grpc and .ttrpc) that the server starts: Render
// gives them their addresses, and they create the sockets 0660, owned by the
// process's user and group, replacing a stale socket file.
type Containerd struct {
	component.Background
	cfg Config

	fatal   chan error    // a Fatal log line of containerd (routeLogs)
	started chan struct{} // closed once the server serves
	exited  chan struct{} // closed when the run returns
	mu      sync.Mutex
	exitErr error
}

var _ component.Component = (*Containerd)(nil)
var _ component.Failer = (*Containerd)(nil)

// New returns a containerd component; nothing runs until Start.
func New(cfg Config) *Containerd {
	return &Containerd{
		cfg:     cfg,
		fatal:   make(chan error, 1),
		started: make(chan struct{}),
		exited:  make(chan struct{}),
	}
}

// Name implements component.Component.
func (*Containerd) Name() string { return "containerd" }

// Start prepares the directories and the process environment and starts the
// server in the background: loading the plugins (the metadata database, CRI)
// can take a while, and Ready reports how it went.
//
// Start changes process-wide state, as a containerd daemon would: it puts
// BinDir first in PATH, routes logrus (containerd's logger) into cfg.Log and
// sets containerd's temporary mount location under Root.
func (c *Containerd) Start(ctx context.Context) error {
	if err := c.cfg.validate(); err != nil {
		return err
	}
	log := c.cfg.Log.With("component", "containerd")
	routeLogs(log, c.cfg.Debug, c.fatal)
	if err := c.cfg.Registries.WriteHostDirs(c.cfg.RegistryDir); err != nil {
		return err
	}
	if !c.cfg.Registries.Empty() {
		log.Info("registry mirrors and credentials", "file", c.cfg.Registries.File, "mirrors", len(c.cfg.Registries.Mirrors), "configs", len(c.cfg.Registries.Configs), "host_dir", c.cfg.RegistryDir)
	}

	snapshotter := SnapshotterOverlay
	if err := overlayutils.Supported(filepath.Join(c.cfg.Root, "io.containerd.snapshotter.v1."+SnapshotterOverlay)); err != nil {
		log.Warn("overlayfs snapshotter not usable here, using native (full copies of image layers: slower, more disk)", "root", c.cfg.Root, "err", err)
		snapshotter = SnapshotterNative
	}
	if !c.cfg.Host.CanRaiseOOMPriority {
		log.Warn("no CAP_SYS_RESOURCE: containerd restricts oom_score_adj of containers to at least its own (restrict_oom_score_adj), runc would refuse the kubelet's negative values")
	}
	if c.cfg.Host.KeyringRefused {
		log.Warn("keyctl is refused (a seccomp filter, as in a docker container's default profile): runc gives containers no session keyring of their own (NoNewKeyring); they cannot use keyrings either")
	}
	conf := Render(c.cfg, snapshotter)
	if err := server.CreateTopLevelDirectories(conf); err != nil {
		return fmt.Errorf("containerd: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(c.cfg.Address), 0o711); err != nil {
		return fmt.Errorf("containerd: socket directory: %w", err)
	}
	if err := os.Setenv("PATH", pathWith(os.Getenv("PATH"), c.cfg.BinDir)); err != nil {
		return fmt.Errorf("containerd: PATH: %w", err)
	}
	if err := mount.SetTempMountLocation(filepath.Join(c.cfg.Root, "tmpmounts")); err != nil {
		return fmt.Errorf("containerd: temporary mount location: %w", err)
	}
	if warnings, err := mount.CleanupTempMounts(0); err != nil {
		log.Warn("unmounting leftover temporary mounts", "err", err)
	} else {
		for _, w := range warnings {
			log.Warn("unmounting leftover temporary mounts", "err", w)
		}
	}
	c.Context(ctx)
	c.Go(func(ctx context.Context) error {
		err := c.run(ctx, conf)
		c.mu.Lock()
		c.exitErr = err
		c.mu.Unlock()
		close(c.exited)
		return err
	})
	log.Info("containerd starting", "address", c.cfg.Address, "root", c.cfg.Root, "state", c.cfg.State, "snapshotter", snapshotter)
	return nil
}

// run builds and serves the server until ctx ends or containerd fails.
func (c *Containerd) run(ctx context.Context, conf *srvconfig.Config) error {
	srv, err := server.New(ctx, conf)
	if err != nil {
		return fmt.Errorf("containerd: %w", err)
	}
	if ctx.Err() != nil { // stopped while loading
		srv.Stop()
		return nil
	}
	if err := srv.Start(ctx); err != nil {
		srv.Stop()
		return fmt.Errorf("containerd: serve: %w", err)
	}
	close(c.started)
	select {
	case <-ctx.Done():
		srv.Stop()
		return nil
	case err := <-c.fatal:
		srv.Stop()
		return err
	}
}

// Ready waits until containerd answers its Version call and the CRI runtime
// service answers too (CRI serves once its initialisation is done).
func (c *Containerd) Ready(ctx context.Context) error {
	select {
	case <-c.started:
	case <-c.exited:
		if err := c.exitError(); err != nil {
			return err
		}
		return errors.New("containerd: stopped before it served")
	case <-ctx.Done():
		return fmt.Errorf("containerd: waiting for the server: %w", ctx.Err())
	}
	cl, err := client.New(c.cfg.Address, client.WithDefaultNamespace(Namespace))
	if err != nil {
		return fmt.Errorf("containerd: client for %s: %w", c.cfg.Address, err)
	}
	defer cl.Close()
	cri := runtimeapi.NewRuntimeServiceClient(cl.Conn().(*grpc.ClientConn))
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		callCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		if _, last = cl.Version(callCtx); last == nil {
			_, last = cri.Version(callCtx, &runtimeapi.VersionRequest{})
		}
		cancel()
		if last == nil {
			return nil
		}
		select {
		case <-tick.C:
		case <-c.exited:
			return errors.Join(errors.New("containerd: stopped while waiting for it"), c.exitError())
		case <-ctx.Done():
			return fmt.Errorf("containerd: waiting for %s: %w (last: %v)", c.cfg.Address, ctx.Err(), last)
		}
	}
}

func (c *Containerd) exitError() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.exitErr
}

// Stop stops the server: its listeners close and its plugins (the metadata
// database among them) are closed. Nothing on disk is removed, and the
// containers keep running: their shims are separate processes, and the next
// start reconnects to them.
func (c *Containerd) Stop(ctx context.Context) error {
	if err := c.Background.Stop(ctx); err != nil {
		return fmt.Errorf("containerd: %w", err)
	}
	return nil
}
