#!/usr/bin/env bash
# Builds what kedge embeds for its containerd into pkg/embedded/assets/:
#   bin/runc                 github.com/opencontainers/runc (cgo, static, with seccomp: needs libseccomp-dev)
#   bin/containerd-shim-runc-v2   containerd's runc shim, from the containerd
#                            module version our go.mod requires (the containerd kedge embeds)
#   bin/{bridge,host-local,loopback,portmap}   github.com/containernetworking/plugins
#   images/pause.tar         the pause image, from ./cmd/pause via ./scripts/mkimage
#   stamps/<asset>           what each asset was built from
# and packs them into pkg/embedded/packed/, which is what the kedge binary
# embeds (pkg/embedded): manifest (sha256, mode, size, name of each file),
# assets.tar.zst (one tar of bin/ and images/, zstd -19 --long=26: one
# archive with a window larger than all of it compresses the Go code the
# helpers share, ~2.5 MB less than the files compressed one by one) and
# stamps. Packing needs the zstd command (Debian: zstd).
# Versions and the pause image tag come from pkg/embedded/versions.go; the
# shim's containerd version (and its dependencies' versions) from go.mod.
# Incremental: an asset whose stamp is unchanged is not rebuilt.
# Honours GO (default go), GOOS/GOARCH (target; cross builds skip the run
# checks and need a cross C compiler and libseccomp for runc: CC, default
# <arch>-linux-gnu-gcc, Debian: gcc-aarch64-linux-gnu and libseccomp-dev:arm64),
# ASSETS_DIR and PACKED_DIR (where to build and pack; default
# pkg/embedded/{assets,packed} for the host's arch, bin/helpers-<os>-<arch>/
# {assets,packed} for another, so that a cross build leaves the dev build's
# helpers alone), RUNC_STATIC=0 (link runc dynamically, for build hosts
# without static glibc) and NOINLINE= (build the Go helpers with inlining;
# see NOINLINE below).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
GO=${GO:-go}
RUNC_STATIC=${RUNC_STATIC:-1}

# NOINLINE: the Go helpers are built without inlining (-gcflags=all=-l). They
# spend their time in syscalls (runc, CNI plugins) or waiting (the shim);
# without inlining their code is ~10% smaller and, more to the point, far
# more of it is byte-identical across the helpers, which the packed archive's
# long zstd window then stores once (with crictl still a helper: packed
# assets 13.7 -> 11.9 MB).
NOINLINE=${NOINLINE-all=-l}

log() { echo "build-helpers: $*" >&2; }
die() { log "error: $*"; exit 1; }

# goconst NAME prints the value of `NAME = "value"` in pkg/embedded/versions.go.
goconst() {
	local v
	v=$(sed -n "s/^[[:space:]]*$1[[:space:]]*=[[:space:]]*\"\([^\"]*\)\".*/\1/p" pkg/embedded/versions.go)
	[ -n "$v" ] || die "pkg/embedded/versions.go: constant $1 not found"
	echo "$v"
}
RUNC_VERSION=$(goconst RuncVersion)
CNI_VERSION=$(goconst CNIPluginsVersion)
PAUSE_IMAGE=$(goconst PauseImage)

GOVERSION=$($GO env GOVERSION)
GOOS=$($GO env GOOS)
GOARCH=$($GO env GOARCH)
GOHOSTOS=$($GO env GOHOSTOS)
GOHOSTARCH=$($GO env GOHOSTARCH)
[ "$GOOS" = linux ] || die "GOOS=$GOOS: kedge's helpers are Linux binaries"
native=false
[ "$GOARCH" = "$GOHOSTARCH" ] && [ "$GOHOSTOS" = linux ] && native=true
if $native; then
	ASSETS=${ASSETS_DIR:-pkg/embedded/assets}
	PACKED=${PACKED_DIR:-pkg/embedded/packed}
else
	ASSETS=${ASSETS_DIR:-bin/helpers-$GOOS-$GOARCH/assets}
	PACKED=${PACKED_DIR:-bin/helpers-$GOOS-$GOARCH/packed}
	# runc's cgo: the target's C compiler and libseccomp (Debian's
	# multiarch library directory for the target).
	gnuarch=$GOARCH
	case $GOARCH in
	amd64) gnuarch=x86_64 ;;
	arm64) gnuarch=aarch64 ;;
	esac
	export CC=${CC:-$gnuarch-linux-gnu-gcc}
	command -v "$CC" >/dev/null || die "CC=$CC not found: a cross build for $GOARCH needs a C compiler for runc (Debian: gcc-$gnuarch-linux-gnu)"
	export PKG_CONFIG_LIBDIR=${PKG_CONFIG_LIBDIR:-/usr/lib/$gnuarch-linux-gnu/pkgconfig}
fi
STAMPS=$ASSETS/stamps

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$ASSETS/bin" "$ASSETS/images" "$STAMPS"

# uptodate NAME STAMP OUTPUT...: true if every OUTPUT exists and
# STAMPS/NAME holds STAMP.
uptodate() {
	local name=$1 stamp=$2 o
	shift 2
	for o in "$@"; do [ -f "$o" ] || return 1; done
	[ -f "$STAMPS/$name" ] && [ "$(cat "$STAMPS/$name")" = "$stamp" ]
}

# place SRC DST MODE: install SRC as DST atomically.
place() {
	install -m "$3" "$1" "$2.tmp"
	mv -f "$2.tmp" "$2"
}

# goinstall DIR LDFLAGS TAGS GCFLAGS PKG@VERSION...: builds the packages in
# their own module (not ours) and copies the executables into DIR.
goinstall() {
	local dir=$1 ldflags=$2 tags=$3 gcflags=$4
	shift 4
	mkdir -p "$dir"
	if $native; then
		(cd "$tmp" && GOFLAGS= GOWORK=off GOBIN="$dir" \
			$GO install -trimpath -tags "$tags" -gcflags "$gcflags" -ldflags "$ldflags" "$@") || return
	else
		# go install refuses GOBIN for cross builds; it uses GOPATH/bin/GOOS_GOARCH.
		(cd "$tmp" && GOFLAGS= GOWORK=off GOBIN= \
			$GO install -trimpath -tags "$tags" -gcflags "$gcflags" -ldflags "$ldflags" "$@") || return
		local p
		for p in "$@"; do
			p=${p%@*}
			cp "$($GO env GOPATH)/bin/${GOOS}_${GOARCH}/${p##*/}" "$dir/" || return
		done
	fi
}

# runc: cgo for its nsenter C code and libseccomp; netgo/osusergo and
# -static so it runs on any Linux host, whatever its libc.
runc_ldflags="-s -w"
[ "$RUNC_STATIC" = 1 ] && runc_ldflags="$runc_ldflags -extldflags -static"
runc_gcflags=$NOINLINE
runc_stamp="runc $RUNC_VERSION seccomp $GOVERSION $GOOS/$GOARCH ldflags=[$runc_ldflags] gcflags=[$runc_gcflags] cc=[$(${CC:-gcc} --version 2>/dev/null | head -n1)]"
if uptodate runc "$runc_stamp" "$ASSETS/bin/runc"; then
	log "runc $RUNC_VERSION up to date"
else
	log "building runc $RUNC_VERSION (cgo; the first build takes a minute or two)"
	# seccomp: containerd gives every pod sandbox the RuntimeDefault profile,
	# which a runc without seccomp support refuses.
	if ! CGO_ENABLED=1 goinstall "$tmp/runc" "$runc_ldflags" "seccomp netgo osusergo" "$runc_gcflags" \
		"github.com/opencontainers/runc@$RUNC_VERSION"; then
		log "hint: runc needs libseccomp (Debian: libseccomp-dev, for a cross build libseccomp-dev:$GOARCH; scripts/deps.sh installs it)"
		[ "$RUNC_STATIC" = 1 ] && log "hint: a static runc needs static glibc (Debian: libc6-dev, Fedora: glibc-static); RUNC_STATIC=0 links it dynamically"
		die "runc $RUNC_VERSION failed to build"
	fi
	if $native; then
		out=$("$tmp/runc/runc" --version) || die "runc --version failed"
		grep -q "^runc version ${RUNC_VERSION#v}\$" <<<"$out" || die "runc --version says: $out"
	fi
	place "$tmp/runc/runc" "$ASSETS/bin/runc" 0755
	echo "$runc_stamp" >"$STAMPS/runc"
fi

# containerd-shim-runc-v2: containerd's standalone runc shim (one process per
# pod), built in our module so it is the containerd version kedge embeds.
# Flags as containerd's Makefile builds it: CGO_ENABLED=0 (static), tags
# urfave_cli_no_docs and no_grpc (the shim speaks only TTRPC), the version
# stamped into github.com/containerd/containerd/v2/version.
shim_mod=github.com/containerd/containerd/v2
shim_pkg=$shim_mod/cmd/containerd-shim-runc-v2
CONTAINERD_VERSION=$($GO list -m -f '{{if .Replace}}{{.Replace.Version}}{{else}}{{.Version}}{{end}}' "$shim_mod") ||
	die "go.mod: no $shim_mod"
[ -n "$CONTAINERD_VERSION" ] || die "go.mod: $shim_mod is replaced by a directory; the shim needs a module version"
shim_tags="urfave_cli_no_docs no_grpc"
shim_gcflags=$NOINLINE
shim_ldflags="-s -w -X $shim_mod/version.Version=$CONTAINERD_VERSION -X $shim_mod/version.Package=$shim_mod"
# Every module the shim is built from, so a bump of any of them (not only
# containerd's) rebuilds it.
shim_deps=$(CGO_ENABLED=0 $GO list -tags "$shim_tags" -deps \
	-f '{{with .Module}}{{.Path}}@{{.Version}}{{with .Replace}}=>{{.Path}}@{{.Version}}{{end}}{{end}}' "$shim_pkg" |
	sort -u | sha256sum | cut -d' ' -f1) || die "go list $shim_pkg failed"
shim_stamp="containerd-shim-runc-v2 containerd $CONTAINERD_VERSION deps=$shim_deps $GOVERSION $GOOS/$GOARCH tags=[$shim_tags] gcflags=[$shim_gcflags] ldflags=[$shim_ldflags]"
if uptodate containerd-shim-runc-v2 "$shim_stamp" "$ASSETS/bin/containerd-shim-runc-v2"; then
	log "containerd-shim-runc-v2 $CONTAINERD_VERSION up to date"
else
	log "building containerd-shim-runc-v2 $CONTAINERD_VERSION"
	CGO_ENABLED=0 $GO build -trimpath -tags "$shim_tags" -gcflags "$shim_gcflags" -ldflags "$shim_ldflags" \
		-o "$tmp/containerd-shim-runc-v2" "$shim_pkg" ||
		die "containerd-shim-runc-v2 $CONTAINERD_VERSION failed to build"
	if $native; then
		out=$("$tmp/containerd-shim-runc-v2" -v) || die "containerd-shim-runc-v2 -v failed"
		grep -Eq "^[[:space:]]*Version:[[:space:]]+${CONTAINERD_VERSION}\$" <<<"$out" ||
			die "containerd-shim-runc-v2 -v says: $out"
	fi
	place "$tmp/containerd-shim-runc-v2" "$ASSETS/bin/containerd-shim-runc-v2" 0755
	echo "$shim_stamp" >"$STAMPS/containerd-shim-runc-v2"
fi

# CNI plugins: pure Go.
cni_plugins=(main/bridge ipam/host-local main/loopback meta/portmap)
cni_ldflags="-s -w -X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=$CNI_VERSION"
cni_gcflags=$NOINLINE
cni_stamp="cni-plugins $CNI_VERSION ${cni_plugins[*]} $GOVERSION $GOOS/$GOARCH ldflags=[$cni_ldflags] gcflags=[$cni_gcflags]"
cni_outputs=()
for p in "${cni_plugins[@]}"; do cni_outputs+=("$ASSETS/bin/${p##*/}"); done
if uptodate cni-plugins "$cni_stamp" "${cni_outputs[@]}"; then
	log "CNI plugins $CNI_VERSION up to date"
else
	log "building CNI plugins $CNI_VERSION: ${cni_plugins[*]}"
	pkgs=()
	for p in "${cni_plugins[@]}"; do pkgs+=("github.com/containernetworking/plugins/plugins/$p@$CNI_VERSION"); done
	CGO_ENABLED=0 goinstall "$tmp/cni" "$cni_ldflags" "" "$cni_gcflags" "${pkgs[@]}" || die "CNI plugins $CNI_VERSION failed to build"
	if $native; then
		out=$("$tmp/cni/bridge" 2>&1 || true)
		grep -q "CNI bridge plugin $CNI_VERSION" <<<"$out" || die "bridge says: $out"
	fi
	for p in "${cni_plugins[@]}"; do place "$tmp/cni/${p##*/}" "$ASSETS/bin/${p##*/}" 0755; done
	echo "$cni_stamp" >"$STAMPS/cni-plugins"
fi

# pause image: our cmd/pause, packed by scripts/mkimage (pkg/images/ociimage).
pause_inputs=$(cat cmd/pause/*.go scripts/mkimage/*.go \
	$(ls pkg/images/ociimage/*.go | grep -v '_test\.go$') | sha256sum | cut -d' ' -f1)
ggcr=$(awk '$1 == "github.com/google/go-containerregistry" {print $1, $2; exit}' go.mod)
pause_stamp="pause $PAUSE_IMAGE inputs=$pause_inputs $GOVERSION $GOOS/$GOARCH [$ggcr]"
if uptodate pause "$pause_stamp" "$ASSETS/images/pause.tar"; then
	log "pause image $PAUSE_IMAGE up to date"
else
	log "building pause image $PAUSE_IMAGE"
	CGO_ENABLED=0 $GO build -trimpath -ldflags "-s -w" -o "$tmp/pause" ./cmd/pause
	# mkimage runs here, so it is built for the host: in a cross build
	# without the target's C compiler (CC) too.
	hostenv=(GOOS="$GOHOSTOS" GOARCH="$GOHOSTARCH")
	$native || hostenv=(-u CC CGO_ENABLED=0 "${hostenv[@]}")
	env "${hostenv[@]}" $GO run ./scripts/mkimage \
		-binary "$tmp/pause" -path /pause -tag "$PAUSE_IMAGE" -arch "$GOARCH" -out "$tmp/pause.tar"
	place "$tmp/pause.tar" "$ASSETS/images/pause.tar" 0644
	echo "$pause_stamp" >"$STAMPS/pause"
fi

# pack: what the binary embeds. The manifest names the content; the archive
# is rebuilt only when it changes (or the zstd settings do). The decoder in
# pkg/embedded accepts windows up to --long=26.
command -v zstd >/dev/null || die "zstd not found (Debian: apt-get install zstd; scripts/deps.sh installs it)"
zstd_args=(-19 --long=26)
mkdir -p "$PACKED"
# Exactly what this script builds, sorted by name (the manifest's order):
# not whatever else an older build left in $ASSETS.
pack_files=$(printf '%s\n' bin/runc bin/containerd-shim-runc-v2 "${cni_outputs[@]#"$ASSETS"/}" images/pause.tar | LC_ALL=C sort)
: >"$tmp/manifest"
for f in $pack_files; do
	mode=0644
	[ "${f%%/*}" = bin ] && mode=0755
	printf '%s %s %s %s\n' "$(sha256sum <"$ASSETS/$f" | cut -d' ' -f1)" "$mode" "$(stat -c %s "$ASSETS/$f")" "$f" >>"$tmp/manifest"
done
for name in runc containerd-shim-runc-v2 cni-plugins pause; do
	printf '%s: %s\n' "$name" "$(cat "$STAMPS/$name")"
done >"$tmp/stamps"
pack_stamp="manifest=$(sha256sum <"$tmp/manifest" | cut -d' ' -f1) zstd=[${zstd_args[*]}]"
if uptodate pack "$pack_stamp" "$PACKED/manifest" "$PACKED/assets.tar.zst" && cmp -s "$tmp/manifest" "$PACKED/manifest"; then
	log "packed assets up to date"
else
	log "packing the assets into $PACKED (zstd ${zstd_args[*]}, a minute)"
	# shellcheck disable=SC2086 # pack_files: names without spaces
	tar -C "$ASSETS" --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -cf - $pack_files |
		zstd -q "${zstd_args[@]}" -T0 -o "$tmp/assets.tar.zst" || die "packing the assets failed"
	place "$tmp/assets.tar.zst" "$PACKED/assets.tar.zst" 0644
	place "$tmp/manifest" "$PACKED/manifest" 0644
	echo "$pack_stamp" >"$STAMPS/pack"
fi
place "$tmp/stamps" "$PACKED/stamps" 0644
