#!/usr/bin/env bash
# Builds the benchmark baseline into bench/bin/: the upstream components kedge
# embeds, each as its own executable, from exactly the module versions in
# go.mod (the Kubernetes "binary deployment"):
#   kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy
#                  k8s.io/kubernetes/cmd/...
#   etcd           go.etcd.io/etcd/server/v3/etcdmain (bench/baseline/cmd/etcd:
#                  the etcd server module has no main package)
#   containerd ctr github.com/containerd/containerd/v2/cmd/...
#   coredns        coremain with the plugins kedge registers (bench/baseline/cmd/coredns)
#   flanneld       flannel's own main package, less the tencentvpc back end
#                  (its SDK is not on the module proxy), built in a scratch
#                  module whose go.mod is bench/go.bench.mod: go.mod plus the
#                  modules flanneld needs and kedge does not
# runc, containerd-shim-runc-v2, the CNI plugins and the pause image are
# kedge's own (make helpers, pkg/embedded/assets).
#
# No -trimpath (the build cache is shared with kedge's build); the Kubernetes
# version is stamped as the Makefile stamps kedge, so /version and the node
# status read the same. go.mod and go.sum are never changed; a build fails if
# a component's version in bench/go.bench.mod differs from go.mod.
# Incremental: a binary whose stamp (inputs) is unchanged is not rebuilt.
# Usage: scripts/bench-build.sh [--update-mod]   (--update-mod: regenerate bench/go.bench.mod)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
export LC_ALL=C
GO=${GO:-go}
OUT=bench/bin
STAMPS=$OUT/.stamps
BUILD=$OUT/.build
BENCH_MOD=bench/go.bench.mod
BENCH_SUM=bench/go.bench.sum

log() { echo "bench-build: $*" >&2; }
die() { log "error: $*"; exit 1; }

mkdir -p "$OUT" "$STAMPS" "$BUILD"
update_mod=false
[ "${1:-}" = --update-mod ] && update_mod=true

# modversion MOD [GOFLAGS...]: the version of MOD in the build list (its
# replacement's version if it is replaced).
modversion() {
	local m=$1
	shift
	$GO list "$@" -m -f '{{if .Replace}}{{.Replace.Version}}{{else}}{{.Version}}{{end}}' "$m"
}

# The five upstream components and their versions, from go.mod.
components=(k8s.io/kubernetes go.etcd.io/etcd/server/v3 github.com/containerd/containerd/v2
	github.com/flannel-io/flannel github.com/coredns/coredns)
declare -A want
for m in "${components[@]}"; do
	want[$m]=$(modversion "$m") || die "go.mod: no $m"
	[ -n "${want[$m]}" ] || die "go.mod: $m is replaced by a directory"
done
K8S_VERSION=${want[k8s.io/kubernetes]}
v=${K8S_VERSION#v}
K8S_MAJOR=${v%%.*}
v=${v#*.}
K8S_MINOR=${v%%.*}
CONTAINERD_VERSION=${want[github.com/containerd/containerd/v2]}
FLANNEL_VERSION=${want[github.com/flannel-io/flannel]}

# As the Makefile's K8S_LDFLAGS, with its -s -w.
k8s_ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=$K8S_MAJOR \
-X k8s.io/component-base/version.gitMinor=$K8S_MINOR -X k8s.io/component-base/version.gitTreeState=clean \
-X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION -X k8s.io/client-go/pkg/version.gitMajor=$K8S_MAJOR \
-X k8s.io/client-go/pkg/version.gitMinor=$K8S_MINOR"
containerd_ldflags="-s -w -X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION \
-X github.com/containerd/containerd/v2/version.Package=github.com/containerd/containerd/v2"
flannel_ldflags="-s -w -X github.com/flannel-io/flannel/pkg/version.Version=$FLANNEL_VERSION"
plain_ldflags="-s -w"

toolchain="$($GO env GOVERSION) $($GO env GOOS)/$($GO env GOARCH) cgo=$($GO env CGO_ENABLED) cc=[$(${CC:-gcc} --version 2>/dev/null | head -n1)]"
mainmod=$(cat go.mod go.sum | sha256sum | cut -d' ' -f1)

# uptodate NAME STAMP: true if OUT/NAME exists and its stamp is STAMP.
uptodate() {
	[ -x "$OUT/$1" ] && [ -f "$STAMPS/$1" ] && [ "$(cat "$STAMPS/$1")" = "$2" ]
}

# gobuild NAME DIR LDFLAGS TAGS PKG STAMP: builds PKG in module DIR into
# OUT/NAME unless its stamp is unchanged.
gobuild() {
	local name=$1 dir=$2 ldflags=$3 tags=$4 pkg=$5 stamp=$6
	if uptodate "$name" "$stamp"; then
		log "$name up to date"
		return
	fi
	log "building $name ($pkg)"
	local begin=$SECONDS
	(cd "$dir" && GOFLAGS=-mod=readonly GOWORK=off $GO build -tags "$tags" -ldflags "$ldflags" \
		-o "$ROOT/$OUT/$name.tmp" "$pkg") || die "$name failed to build"
	mv -f "$OUT/$name.tmp" "$OUT/$name"
	echo "$stamp" >"$STAMPS/$name"
	log "$name built in $((SECONDS - begin))s"
}

# Kubernetes: the same ldflags stamps as kedge.
for c in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy; do
	gobuild "$c" . "$k8s_ldflags" "" "k8s.io/kubernetes/cmd/$c" \
		"$c $K8S_VERSION mod=$mainmod $toolchain ldflags=[$k8s_ldflags]"
done

# containerd and ctr, tagged as containerd's Makefile builds them.
for c in containerd ctr; do
	gobuild "$c" . "$containerd_ldflags" urfave_cli_no_docs "github.com/containerd/containerd/v2/cmd/$c" \
		"$c $CONTAINERD_VERSION mod=$mainmod $toolchain ldflags=[$containerd_ldflags]"
done

# etcd and coredns: our thin mains over the upstream libraries.
for c in etcd coredns; do
	src=$(cat bench/baseline/cmd/$c/*.go | sha256sum | cut -d' ' -f1)
	gobuild "$c" . "$plain_ldflags" "" "./bench/baseline/cmd/$c" \
		"$c src=$src mod=$mainmod $toolchain ldflags=[$plain_ldflags]"
done

# flanneld: flannel's main.go, without the tencentvpc import, as the main
# package of a scratch module under bench/bin/.build (never committed).
flannel_dir=$($GO list -m -f '{{.Dir}}' github.com/flannel-io/flannel) || die "go list flannel"
[ -f "$flannel_dir/main.go" ] || die "$flannel_dir/main.go: not found"
scratch=$BUILD/flanneld
mkdir -p "$scratch"
grep -v '"github.com/flannel-io/flannel/pkg/backend/tencentvpc"' "$flannel_dir/main.go" >"$scratch/main.go.tmp"
[ "$(($(wc -l <"$flannel_dir/main.go") - $(wc -l <"$scratch/main.go.tmp")))" = 1 ] ||
	die "flannel $FLANNEL_VERSION main.go: expected one tencentvpc import line to drop"
mv -f "$scratch/main.go.tmp" "$scratch/main.go"

# The bench module file is go.mod plus what flanneld needs; its first line
# records which go.mod it was made from, and it is regenerated when go.mod
# changes (that may need the module proxy).
gomod_hash=$(sha256sum go.mod | cut -d' ' -f1)
header="// generated by scripts/bench-build.sh from go.mod sha256 $gomod_hash; do not edit"
if $update_mod || [ ! -f "$BENCH_MOD" ] || [ "$(head -n1 "$BENCH_MOD")" != "$header" ]; then
	log "generating $BENCH_MOD (go.mod + the modules flanneld needs)"
	sed 's|^module .*|module kedge.local/bench/flanneld|' go.mod >"$scratch/go.mod"
	cp go.sum "$scratch/go.sum"
	(cd "$scratch" && GOFLAGS=-mod=mod GOWORK=off $GO list -deps . >/dev/null) ||
		die "resolving flanneld's modules failed"
	{
		echo "$header"
		sed 's|^module .*|module github.com/kedge-io/kedge|' "$scratch/go.mod"
	} >"$BENCH_MOD.tmp"
	mv -f "$BENCH_MOD.tmp" "$BENCH_MOD"
	cp "$scratch/go.sum" "$BENCH_SUM"
fi
tail -n +2 "$BENCH_MOD" | sed 's|^module .*|module kedge.local/bench/flanneld|' >"$scratch/go.mod"
cp "$BENCH_SUM" "$scratch/go.sum"

# Every module kedge builds with has the same version in the bench module:
# the five components above and everything they share with flanneld.
main_list=$($GO list -m -f '{{.Path}} {{if .Replace}}{{.Replace.Version}}{{else}}{{.Version}}{{end}}' all | tail -n +2 | sort)
bench_list=$(cd "$scratch" && GOFLAGS=-mod=readonly GOWORK=off $GO list -m \
	-f '{{.Path}} {{if .Replace}}{{.Replace.Version}}{{else}}{{.Version}}{{end}}' all | tail -n +2 | sort) ||
	die "go list -m all in the flanneld module failed"
for m in "${components[@]}"; do
	got=$(awk -v m="$m" '$1 == m {print $2}' <<<"$bench_list")
	[ "$got" = "${want[$m]}" ] || die "$BENCH_MOD: $m is $got, go.mod has ${want[$m]} (run with --update-mod)"
done
changed=$(join <(echo "$main_list") <(echo "$bench_list") | awk '$2 != $3')
[ -z "$changed" ] || die "$BENCH_MOD changes versions of modules kedge uses (module go.mod bench):
$changed"

benchmod=$(cat "$scratch/go.mod" "$scratch/go.sum" "$scratch/main.go" | sha256sum | cut -d' ' -f1)
gobuild flanneld "$scratch" "$flannel_ldflags" "" . \
	"flanneld $FLANNEL_VERSION mod=$benchmod $toolchain ldflags=[$flannel_ldflags]"

# kwok (sigs.k8s.io/kwok, the fake kubelets of `kedge-bench -only scale`):
# built by `go install pkg@version` from kwok's own module and go.mod (it
# needs k8s.io/* versions other than go.mod's; nothing links it with
# kedge), with the stages kwokctl runs by default as its config.
KWOK_VERSION=v0.8.0
kwok_stages=(node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml
	pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml)
kwok_stamp="kwok $KWOK_VERSION $toolchain ldflags=[$plain_ldflags]"
if uptodate kwok "$kwok_stamp" && [ -f "$OUT/kwok-stages.yaml" ]; then
	log "kwok up to date"
else
	log "building kwok (sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION, its own go.mod)"
	begin=$SECONDS
	# Outside this module: go.mod and go.sum stay as they are.
	kwok_dir=$(cd / && GOWORK=off GOFLAGS= $GO mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" |
		sed -n 's/^\t"Dir": "\(.*\)",$/\1/p') || die "download sigs.k8s.io/kwok@$KWOK_VERSION"
	[ -d "$kwok_dir" ] || die "sigs.k8s.io/kwok@$KWOK_VERSION: no module directory"
	(cd / && GOWORK=off GOFLAGS= GOBIN="$ROOT/$BUILD/kwok" $GO install -ldflags "$plain_ldflags" \
		"sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION") || die "kwok failed to build"
	for f in "${kwok_stages[@]}"; do
		echo "---"
		cat "$kwok_dir/kustomize/stage/$f"
	done >"$OUT/kwok-stages.yaml.tmp"
	mv -f "$OUT/kwok-stages.yaml.tmp" "$OUT/kwok-stages.yaml"
	mv -f "$BUILD/kwok/kwok" "$OUT/kwok"
	echo "$kwok_stamp" >"$STAMPS/kwok"
	log "kwok built in $((SECONDS - begin))s"
fi

# What was built, by each binary's own account.
for c in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy; do
	echo "$c: $("$OUT/$c" --version 2>&1 | head -n1)"
done
echo "etcd: $("$OUT/etcd" --version 2>&1 | head -n1)"
echo "containerd: $("$OUT/containerd" --version 2>&1 | head -n1)"
echo "ctr: $("$OUT/ctr" --version 2>&1 | head -n1)"
echo "flanneld: $("$OUT/flanneld" --version 2>&1 | head -n1)"
echo "coredns: $("$OUT/coredns" -version 2>&1 | head -n1)"
echo "kwok: $("$OUT/kwok" --version 2>&1 | head -n1)"
