#!/usr/bin/env bash
# Builds kedge's release artifacts into dist/ (make release):
#   kedge-<arch>           the kedge binary for linux/<arch>, its helpers (runc,
#                          the shim, CNI plugins, pause image) built for <arch>
#   sha256sum-<arch>.txt   its checksum, in sha256sum's format (install.sh checks it)
#   install.sh             a copy of the installer
# for each arch in ARCHES (default "amd64 arm64").
#
# The release is built from HEAD as committed, never from the work tree: each
# arch is built in a fresh export of HEAD (git archive) under RELEASE_WORK
# (default /var/tmp/kedge-release), where pkg/embedded/packed holds that
# arch's helpers; their build outputs are kept in RELEASE_WORK/helpers-<arch>
# so that a second release rebuilds only what changed. The work tree, its
# bin/kedge and its amd64 helpers are left alone.
#
# Release binaries differ from `make build` in how they link, not in what
# they hold: statically (-extldflags -static, with the netgo and osusergo
# tags besides TAGS, so that name and user look-ups never load the host's
# libc modules), so that one binary runs on any Linux of its arch, glibc or
# musl (Alpine), whatever its libc version. The version comes from
# scripts/version.sh (v1.36.4+kedge1 from a tag v1.36.4+kedge1).
#
# Cross builds need the target's C compiler and libseccomp (runc, and kedge's
# own cgo): Debian's gcc-aarch64-linux-gnu, libc6-dev-arm64-cross and
# libseccomp-dev:arm64 (after dpkg --add-architecture arm64); the Dockerfile
# at the top of the repository has them. A first arm64 build compiles all of
# Kubernetes for arm64: ~25 minutes on 2 cores.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$PWD
GO=${GO:-go}
ARCHES=${ARCHES:-amd64 arm64}
DIST=${DIST:-$repo/dist}
WORK=${RELEASE_WORK:-/var/tmp/kedge-release}
TAGS=${TAGS:-kustomize_disable_go_plugin_support nri_no_wasm no_btrfs no_zfs no_devmapper no_tracing}

log() { echo "release: $*" >&2; }
die() { log "error: $*"; exit 1; }

command -v git >/dev/null || die "git not found: the release is built from HEAD"
# HEAD once: commits made while the release builds are not in it.
rev=$(git rev-parse HEAD)
version=$(scripts/version.sh "$rev")
commit=$(git rev-parse --short "$rev")
git diff --quiet "$rev" || log "warning: the work tree has uncommitted changes; the release is built from HEAD $commit without them"
log "kedge $version for: $ARCHES"

mkdir -p "$DIST" "$WORK"
hostarch=$($GO env GOHOSTARCH)
for arch in $ARCHES; do
	case $arch in
	amd64) gnuarch=x86_64 ;;
	arm64) gnuarch=aarch64 ;;
	*) die "ARCHES: $arch: kedge releases amd64 and arm64" ;;
	esac
	cc=gcc
	[ "$arch" = "$hostarch" ] || cc=$gnuarch-linux-gnu-gcc
	command -v "$cc" >/dev/null || die "$cc not found: building for $arch needs it (Debian: gcc-$gnuarch-linux-gnu libc6-dev-$arch-cross libseccomp-dev:$arch)"

	src=$WORK/src-$arch
	rm -rf "$src"
	mkdir -p "$src"
	git archive --format=tar "$rev" | tar -x -C "$src"
	# shellcheck disable=SC2016 # $(LDFLAGS) is make's, expanded by make
	ldflags=$(make -s --no-print-directory -C "$src" --eval 'print-ldflags: ; @echo $(LDFLAGS)' print-ldflags \
		GO="$GO" VERSION="$version" COMMIT="$commit")
	[ -n "$ldflags" ] || die "Makefile: LDFLAGS is empty"
	ldflags="$ldflags -linkmode external -extldflags -static"

	log "$arch: building kedge $version in $src (log: $WORK/build-$arch.log)"
	begin=$(date +%s)
	# make build: the helpers for $arch (build-helpers.sh, into
	# helpers-$arch, packed where pkg/embedded embeds them), crictl, then
	# kedge itself; GOARCH and CC reach every step through the environment.
	if ! (cd "$src" && GOARCH=$arch CGO_ENABLED=1 CC=$cc \
		ASSETS_DIR="$WORK/helpers-$arch" PACKED_DIR=pkg/embedded/packed \
		make build GO="$GO" TAGS="$TAGS netgo osusergo" LDFLAGS="$ldflags" BIN="$DIST/kedge-$arch.tmp") \
		>"$WORK/build-$arch.log" 2>&1; then
		tail -n 30 "$WORK/build-$arch.log" >&2
		die "$arch: build failed (full log: $WORK/build-$arch.log)"
	fi
	file=$(file -b "$DIST/kedge-$arch.tmp" 2>/dev/null || true)
	case $file in
	*"statically linked"*) ;;
	*) [ -z "$file" ] || die "$arch: kedge is not statically linked: $file" ;;
	esac
	mv -f "$DIST/kedge-$arch.tmp" "$DIST/kedge-$arch"
	(cd "$DIST" && sha256sum "kedge-$arch" >"sha256sum-$arch.txt")
	log "$arch: dist/kedge-$arch $(stat -c %s "$DIST/kedge-$arch") bytes in $(($(date +%s) - begin)) s"
done
git show "$rev:install.sh" >"$DIST/install.sh.tmp" || die "$commit has no install.sh"
chmod 0755 "$DIST/install.sh.tmp"
mv -f "$DIST/install.sh.tmp" "$DIST/install.sh"
case " $ARCHES " in
*" $hostarch "*)
	out=$("$DIST/kedge-$hostarch" --version) || die "dist/kedge-$hostarch --version failed"
	case $out in
	*"$version"*) log "dist/kedge-$hostarch --version: $out" ;;
	*) die "dist/kedge-$hostarch --version says $out, want $version" ;;
	esac
	;;
esac
ls -l "$DIST" >&2
