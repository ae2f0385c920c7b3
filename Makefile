# kedge — build, test, e2e, bench.
GO      ?= go
# v<kubernetes>+kedge<N> from the git tag of that name (scripts/version.sh)
VERSION ?= $(shell scripts/version.sh 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null)
PKG     := github.com/kedge-io/kedge
# The embedded Kubernetes reports its own version (kubelet → Node status, /version).
K8S_VERSION := $(shell $(GO) list -m -f '{{.Version}}' k8s.io/kubernetes 2>/dev/null)
K8S_MAJOR   := $(word 1,$(subst ., ,$(patsubst v%,%,$(K8S_VERSION))))
K8S_MINOR   := $(word 2,$(subst ., ,$(patsubst v%,%,$(K8S_VERSION))))
K8S_LDFLAGS := -X k8s.io/component-base/version.gitVersion=$(K8S_VERSION) -X k8s.io/component-base/version.gitMajor=$(K8S_MAJOR) \
	-X k8s.io/component-base/version.gitMinor=$(K8S_MINOR) -X k8s.io/component-base/version.gitTreeState=clean \
	-X k8s.io/client-go/pkg/version.gitVersion=$(K8S_VERSION) -X k8s.io/client-go/pkg/version.gitMajor=$(K8S_MAJOR) \
	-X k8s.io/client-go/pkg/version.gitMinor=$(K8S_MINOR)
LDFLAGS := -s -w -X $(PKG)/pkg/version.Version=$(VERSION) -X $(PKG)/pkg/version.Commit=$(COMMIT) $(K8S_LDFLAGS)
BIN     := $(CURDIR)/bin/kedge
# Build tags for bin/kedge and for every `go test` (the same tags, so the test
# binaries test what ships and share the build cache with it). Each drops code
# kedge never runs:
#   kustomize_disable_go_plugin_support  kubectl's kustomize without Go plugin
#       loading: no "plugin" package, so the linker stops exporting every
#       symbol into .dynsym/.dynstr (-46 MB raw, -13 MB zstd)
#   nri_no_wasm  containerd's NRI without WASM plugins (no wazero; kedge
#       disables NRI anyway)
#   no_btrfs no_zfs no_devmapper no_tracing  containerd snapshotters and the
#       OTLP tracing plugin that pkg/containerd disables in its config
TAGS    ?= kustomize_disable_go_plugin_support nri_no_wasm no_btrfs no_zfs no_devmapper no_tracing

.PHONY: build helpers test unit integration smoke e2e robustness fuzz bench clean

## build: bin/kedge, version-stamped, with the helpers embedded
build: helpers
	$(GO) build -tags '$(TAGS)' -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/kedge

## helpers: runc, containerd-shim-runc-v2, CNI plugins and the pause image into pkg/embedded/assets,
## and crictl as a package in third_party/crictl (both generated, incremental)
helpers:
	GO=$(GO) scripts/gen-crictl.sh
	GO=$(GO) scripts/build-helpers.sh

## test: unit tests, the integration tests against the real binary, the multi-node smoke and the
## conformance slice (root; ~20 min warm on this 2-core VM; cold, the conformance tools and the Debian rootfs of the
## stand-in images add ~15 min once)
test: unit install-check image-check integration smoke conformance-slice

## unit: unit tests; with KEDGE_TEST_BINDIR the containerd tests run real
## containers with the built runc and containerd-shim-runc-v2 (as root)
unit: helpers
	KEDGE_TEST_BINDIR=$(CURDIR)/pkg/embedded/assets/bin $(GO) test -tags '$(TAGS)' -count=1 ./cmd/... ./pkg/... ./bench/... ./tests/e2e/linearize/ ./tests/e2e/harness/

integration: build
	KEDGE_BIN=$(BIN) $(GO) test -tags '$(TAGS)' -count=1 -v -timeout 15m ./tests/integration/...

## smoke: the CI slice of tests/e2e: 1 server + 1 agent that joins it, cross-node pod traffic, DNS
smoke: build
	KEDGE_BIN=$(BIN) $(GO) test -tags '$(TAGS)' -count=1 -v -timeout 15m -run 'TestAgentJoin' ./tests/e2e/

## e2e: multi-node clusters on this machine, each node in its own network, mount
## and PID namespaces (root; not part of `make test`). KEDGE_E2E_LOGS=<dir> keeps the node logs.
e2e: build
	KEDGE_BIN=$(BIN) $(GO) test -tags '$(TAGS)' -count=1 -v -timeout 120m ./tests/e2e/

## robustness: the fault tests at full length (root, ~17 min on 1.37.2, not in CI): TestLinearizable with
## ROBUSTNESS_CYCLES kill/partition/restart cycles checked by porcupine, TestPowerLoss with
## POWERLOSS_CYCLES whole-site power losses, TestDiskFull, TestAgentWaitsForServer. Each logs its
## seed: KEDGE_ROBUSTNESS_SEED=<seed> replays a run. `make e2e` runs the short versions (5 cycles).
ROBUSTNESS_CYCLES ?= 50
POWERLOSS_CYCLES  ?= 10
robustness: build
	KEDGE_BIN=$(BIN) KEDGE_ROBUSTNESS_CYCLES=$(ROBUSTNESS_CYCLES) KEDGE_POWERLOSS_CYCLES=$(POWERLOSS_CYCLES) \
		$(GO) test -tags '$(TAGS)' -count=1 -v -timeout 240m -run 'TestLinearizable|TestPowerLoss|TestDiskFull|TestAgentWaitsForServer' ./tests/e2e/

## fuzz: every fuzz target for FUZZTIME each, one at a time (not in CI: `make unit` runs their
## seed corpora). The first -fuzz build of a package recompiles its dependencies with coverage.
FUZZTIME ?= 60s
FUZZ = join:FuzzParse join:FuzzEnsureTokenFile cli:FuzzApplyConfigFile supervisor:FuzzWrap supervisor:FuzzNodeHandler \
	supervisor:FuzzServerHandler containerd:FuzzReadArchive containerd:FuzzApplyLayer manifests:FuzzDecode manifests:FuzzRender \
	registries:FuzzParse
fuzz: helpers
	@for t in $(FUZZ); do $(GO) test -tags '$(TAGS)' -run '^$$' -fuzz "^$${t#*:}$$" -fuzztime=$(FUZZTIME) -fuzzminimizetime=10x ./pkg/$${t%%:*}/ || exit 1; done

## bench: kedge against the upstream components as separate processes (root, ~1 h, not in CI):
## builds both, runs each setup BENCH_RUNS times alternating, prints one Markdown table (also
## bin/bench.md; logs in /var/tmp/kedge-bench). BENCH_FLAGS=-quick for a short development run.
BENCH_RUNS ?= 3
bench: build
	@test "$$(id -u)" = 0 || { echo "make bench runs clusters on this host: run it as root" >&2; exit 1; }
	GO=$(GO) scripts/bench-build.sh
	$(GO) build -o bin/kedge-bench ./bench/cmd/kedge-bench
	bin/kedge-bench -kedge $(BIN) -baseline-bin $(CURDIR)/bench/bin -repo $(CURDIR) -runs $(BENCH_RUNS) -out bin/bench.md $(BENCH_FLAGS)

## release: dist/kedge-amd64 and dist/kedge-arm64 (static, each with its arch's helpers), their
## dist/sha256sum-<arch>.txt and dist/install.sh, from HEAD as committed (scripts/release.sh;
## ARCHES="amd64 arm64"; a first arm64 build compiles all of Kubernetes for arm64, ~25 min on 2 cores)
release:
	GO=$(GO) TAGS='$(TAGS)' scripts/release.sh

## install-test: install.sh end to end under systemd as PID 1 (systemd-nspawn containers of a
## cached Debian rootfs: a server, reboot, an agent that joins, upgrade, tampered binary, uninstall);
## root, ~15 min, not part of `make test`
install-test: build
	KEDGE_BIN=$(BIN) $(GO) test -tags '$(TAGS)' -count=1 -v -timeout 45m ./tests/install/

## install-check: the fast part (in make test): install.sh is shellcheck-clean, and the unit it
## writes (in a private mount namespace, systemctl faked) passes systemd-analyze verify, the OpenRC one runs
## kedge with the arguments given
install-check:
	$(GO) test -tags '$(TAGS)' -count=1 -run 'TestShellcheck|TestUnit|TestOpenRC' ./tests/install/

.PHONY: release install-test install-check

## image: the node image kedge-node:<version> (and :latest) from package/Dockerfile with docker:
## $(BIN) (make build; IMAGE_BIN=dist/kedge-amd64 for the static release binary) and iptables,
## nft, mount taken from IMAGE_BASE (a Debian image, default debian:bookworm-slim); docs/node-image.md
IMAGE      ?= kedge-node
IMAGE_BIN  ?= $(BIN)
IMAGE_BASE ?= debian:bookworm-slim
image: $(if $(filter $(BIN),$(IMAGE_BIN)),build)
	IMAGE=$(IMAGE) KEDGE_BIN=$(IMAGE_BIN) IMAGE_BASE=$(IMAGE_BASE) IMAGE_BUILD_FLAGS='$(IMAGE_BUILD_FLAGS)' scripts/image.sh

## image-test: builds the image with a dockerd of its own (no host firewall changes) and runs a
## server and an agent container that join and run a pod each (root, ~3 min, not part of make test;
## holds /tmp/kedge-e2e.lock while its dockerd runs)
image-test: build
	KEDGE_BIN=$(BIN) flock /tmp/kedge-e2e.lock $(GO) test -tags '$(TAGS)' -count=1 -v -timeout 20m -run TestNodeImage ./tests/image/

## image-check: the fast part (in make test): the image's scripts are shellcheck-clean, and
## package/rootfs.sh run in a Debian base (chroot, no docker) gives a file system whose programs run
image-check: build
	KEDGE_BIN=$(BIN) $(GO) test -tags '$(TAGS)' -count=1 -v -run 'TestShellcheck|TestRootfs' ./tests/image/

.PHONY: image image-test image-check

## conformance: the upstream Kubernetes conformance suite of go.mod's Kubernetes version, offline, on
## a two-node cluster (a server and an agent on the tests/e2e harness) pulling locally built stand-ins
## of the suite's images from a local registry: the [Conformance] specs in parallel, then the [Serial]
## ones (root, ~41 min on 1.37.2 with 4 ginkgo processes, not in CI; holds /tmp/kedge-e2e.lock).
## KEDGE_CONFORMANCE_FOCUS=<regexp> runs the matching ones; reports and logs in bin/conformance/results/
## (docs/conformance.md)
CONFORMANCE_PROCS ?= 4
conformance: build conformance-tools
	cd tests/conformance && KEDGE_BIN=$(BIN) KEDGE_CONFORMANCE_PROCS=$${KEDGE_CONFORMANCE_PROCS:-$(CONFORMANCE_PROCS)} flock /tmp/kedge-e2e.lock $(CURDIR)/bin/conformance/conformance.test \
		-test.count=1 -test.v -test.timeout=6h -test.run='^TestConformance$$'

## conformance-slice: ~30 of those specs (DNS, Services, exec/logs/port-forward, ConfigMap/Secret/
## projected volumes, scheduler) in a few minutes (root; holds /tmp/kedge-e2e.lock)
conformance-slice: build conformance-tools
	cd tests/conformance && KEDGE_BIN=$(BIN) flock /tmp/kedge-e2e.lock $(CURDIR)/bin/conformance/conformance.test \
		-test.count=1 -test.v -test.timeout=40m -test.run='^TestConformanceSlice$$'

## conformance-tools: e2e.test, ginkgo, agnhost … from go.mod's k8s.io/kubernetes into bin/conformance
## (scripts/conformance-tools.sh; the first e2e.test build takes ~8-15 min on 2 cores), and the
## test binary of tests/conformance (compiled before the lock is taken)
conformance-tools: helpers
	GO=$(GO) TAGS='$(TAGS)' scripts/conformance-tools.sh
	$(GO) test -c -tags '$(TAGS)' -o bin/conformance/conformance.test ./tests/conformance/

.PHONY: conformance conformance-slice conformance-tools

clean:
	rm -rf bin
