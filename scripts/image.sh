#!/bin/sh
# Builds the kedge node image (package/Dockerfile) with docker (make image):
#
#   IMAGE=kedge-node IMAGE_TAG=v1.36.4-kedge1 KEDGE_BIN=bin/kedge scripts/image.sh
#
# The build context is a directory of its own holding only the Dockerfile,
# package/rootfs.sh and the kedge binary (KEDGE_BIN, default bin/kedge), so
# that docker is not sent the whole repository. The image is tagged
# IMAGE:IMAGE_TAG and IMAGE:latest. IMAGE_BASE (default debian:bookworm-slim)
# is the Debian image of the build stage; IMAGE_BUILD_FLAGS are passed to
# docker build (e.g. --network host where the daemon has no NAT).
set -eu

cd "$(dirname "$0")/.."
DOCKER=${DOCKER:-docker}
IMAGE=${IMAGE:-kedge-node}
KEDGE_BIN=${KEDGE_BIN:-bin/kedge}
IMAGE_BASE=${IMAGE_BASE:-debian:bookworm-slim}
IMAGE_BUILD_FLAGS=${IMAGE_BUILD_FLAGS:-}

die() { echo "image: error: $*" >&2; exit 1; }

[ -x "$KEDGE_BIN" ] || die "KEDGE_BIN=$KEDGE_BIN is not an executable: run make build (or make release and KEDGE_BIN=dist/kedge-amd64)"
command -v "$DOCKER" >/dev/null || die "$DOCKER not found: the image is built with docker (Debian: apt-get install docker.io)"
if [ -z "${IMAGE_TAG:-}" ]; then
	# Docker tags allow no "+": v1.36.4+kedge1 is tagged v1.36.4-kedge1.
	IMAGE_TAG=$("$KEDGE_BIN" --version 2>/dev/null | awk '{ print $3; exit }' | tr '+' '-')
	[ -n "$IMAGE_TAG" ] || die "$KEDGE_BIN --version printed no version; set IMAGE_TAG"
fi

ctx=$(mktemp -d "${TMPDIR:-/tmp}/kedge-image.XXXXXX")
trap 'rm -rf "$ctx"' EXIT
mkdir -p "$ctx/package"
cp package/Dockerfile package/rootfs.sh "$ctx/package/"
cp "$KEDGE_BIN" "$ctx/kedge"

# shellcheck disable=SC2086 # IMAGE_BUILD_FLAGS are words for docker build
"$DOCKER" build $IMAGE_BUILD_FLAGS -f "$ctx/package/Dockerfile" \
	--build-arg BASE="$IMAGE_BASE" --build-arg KEDGE_BIN=kedge \
	-t "$IMAGE:$IMAGE_TAG" -t "$IMAGE:latest" "$ctx"
echo "image: $IMAGE:$IMAGE_TAG ($("$DOCKER" image inspect -f '{{.Size}}' "$IMAGE:$IMAGE_TAG") bytes)" >&2
