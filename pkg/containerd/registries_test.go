package containerd

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/kedge-io/kedge/pkg/registries"
	"github.com/kedge-io/kedge/tests/testregistry"
)

// TestRegistryMirrors pulls through containerd's CRI plugin as the kubelet
// does, from a real registry (HTTPS with its own CA, basic auth) that
// mirrors two registries which do not exist: one directly (hosts.toml and
// the CRI plugin's credentials), one with a rewrite (the image proxy,
// pulled twice at once as the kubelet's parallel pulls do).
func TestRegistryMirrors(t *testing.T) {
	env := newTestEnv(t)
	const user, password = "kedge", "registry-s3cret"
	reg := testregistry.Start(t, t.TempDir(), user, password)
	img := sleeperImage(t, buildSleeper(t))
	for _, repo := range []string{"kedge/sleeper", "mirrored/sleeper"} {
		reg.Push(t, password, repo, "1", ocispec.MediaTypeImageManifest, img.manifest, img.layer, img.config)
	}
	port := reg.Server.Listener.Addr().(*net.TCPAddr).Port
	regs, err := registries.Parse([]byte(fmt.Sprintf(`
mirrors:
  registry.example.test:
    endpoint: ["https://127.0.0.1:%[1]d"]
  rewrite.example.test:
    endpoint: ["https://127.0.0.1:%[1]d"]
    rewrite: {"^app/(.*)$": "mirrored/$1"}
configs:
  "127.0.0.1:%[1]d":
    auth: {username: %[2]s, password: %[3]s}
    tls: {ca_file: %[4]s}
`, port, user, password, reg.CA)))
	mustf(t, err, "registries.yaml")
	cfg := env.cfg
	cfg.Registries = regs
	// logrus is process-wide: once this test ends, containerd code that
	// later tests run (the archive fuzzers' content stores) must not log
	// into its t.
	t.Cleanup(func() { routeLogs(slog.New(slog.NewTextHandler(io.Discard, nil)), false, make(chan error, 1)) })
	c := startContainerd(t, cfg)
	defer stopContainerd(t, c)

	proxy := registries.NewImageProxy(registries.ProxyConfig{
		Registries: regs, HostDir: cfg.RegistryDir, Socket: filepath.Join(filepath.Dir(cfg.Address), "images.sock"),
		Containerd: cfg.Address, Namespace: Namespace, Log: cfg.Log,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	mustf(t, proxy.Start(ctx), "image proxy")
	defer proxy.Stop(context.Background())
	_, direct := criClient(t, cfg.Address)
	_, images := criClient(t, filepath.Join(filepath.Dir(cfg.Address), "images.sock"))

	pull := func(is runtimeapi.ImageServiceClient, name string) (string, error) {
		resp, err := is.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: name}})
		if err != nil {
			return "", err
		}
		return resp.ImageRef, nil
	}
	began := time.Now()
	id, err := pull(direct, "registry.example.test/kedge/sleeper:1")
	mustf(t, err, "pull through the mirror from containerd's CRI plugin")
	if id != img.configD.String() {
		t.Errorf("image ID %s, want the config digest %s", id, img.configD)
	}
	t.Logf("pulled through the mirror in %s", time.Since(began).Round(time.Millisecond))

	// Without the proxy the rewrite does not happen: the registry itself
	// (rewrite.example.test) does not exist.
	if _, err := pull(direct, "rewrite.example.test/app/sleeper:1"); err == nil {
		t.Errorf("containerd pulled a rewritten name by itself")
	}

	began = time.Now()
	var wg sync.WaitGroup
	ids, errs := make([]string, 2), make([]error, 2)
	for i := range ids {
		wg.Add(1)
		go func() { defer wg.Done(); ids[i], errs[i] = pull(images, "rewrite.example.test/app/sleeper:1") }()
	}
	wg.Wait()
	for i := range ids {
		if errs[i] != nil || ids[i] != id {
			t.Fatalf("pull %d through the rewriting proxy: %s, %v\nregistry requests:\n%s", i, ids[i], errs[i], reg.Requests())
		}
	}
	t.Logf("pulled twice at once through the rewrite in %s", time.Since(began).Round(time.Millisecond))
	if seen := reg.Requests(); !strings.Contains(seen, "0 HEAD /v2/mirrored/sleeper/manifests/1") || strings.Contains(seen, "/v2/app/") {
		t.Errorf("the registry was not asked for the rewritten name:\n%s", seen)
	}
	st, err := images.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: "rewrite.example.test/app/sleeper:1"}})
	if err != nil || st.GetImage().GetId() != id {
		t.Fatalf("status of the rewritten image: %v, %v", st, err)
	}
	list, err := images.ListImages(ctx, &runtimeapi.ListImagesRequest{})
	mustf(t, err, "list images through the proxy")
	var names []string
	for _, i := range list.Images {
		names = append(names, i.RepoTags...)
		names = append(names, i.RepoDigests...)
	}
	all := strings.Join(names, " ")
	if !strings.Contains(all, "rewrite.example.test/app/sleeper:1") || !strings.Contains(all, "rewrite.example.test/app/sleeper@sha256:") || strings.Contains(all, "kedge-rewrite.invalid") {
		t.Errorf("image names = %s", all)
	}

	// An image the mirror does not have: the error names both attempts.
	_, err = pull(images, "rewrite.example.test/app/nothing:1")
	if err == nil || !strings.Contains(err.Error(), "through the mirror endpoints of rewrite.example.test") || !strings.Contains(err.Error(), "from rewrite.example.test itself") {
		t.Errorf("missing image: %v", err)
	}
	t.Logf("missing image: %v", err)
}
