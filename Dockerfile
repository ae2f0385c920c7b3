# kedge's build environment: Debian, Go, what scripts/deps.sh installs, and
# the arm64 cross toolchain (C compiler, libc and libseccomp for arm64) that
# make release needs for runc and kedge's own cgo.
#
#   docker build -t kedge-build .
#   docker run --rm -v "$PWD":/src kedge-build make release     # dist/ as on the host
#
# BASE is any Debian bookworm image; with no registry at hand, one made from a
# debootstrap rootfs works: tar -C rootfs -c . | docker import - kedge-base
# and then docker build --build-arg BASE=kedge-base --network host -t kedge-build .
# (EXTRA_CA below, where TLS goes through a proxy).
ARG BASE=debian:bookworm
FROM ${BASE}

# The Go version go.mod asks for.
ARG GO_VERSION=1.26.8

ENV DEBIAN_FRONTEND=noninteractive
RUN dpkg --add-architecture arm64 && \
	apt-get update -qq && \
	apt-get install -y -qq --no-install-recommends \
		ca-certificates git make gcc libc6-dev file shellcheck \
		iptables iproute2 procps libseccomp-dev pkg-config zstd \
		gcc-aarch64-linux-gnu libc6-dev-arm64-cross libseccomp-dev:arm64 \
		golang-1.19-go && \
	rm -rf /var/lib/apt/lists/*

# EXTRA_CA: more CA certificates (PEM) to trust, for a network whose TLS
# goes through a proxy: --build-arg EXTRA_CA="$(cat proxy-ca.pem)".
ARG EXTRA_CA=
RUN if [ -n "$EXTRA_CA" ]; then \
		printf '%s\n' "$EXTRA_CA" >/usr/local/share/ca-certificates/extra.crt && update-ca-certificates >/dev/null; \
	fi

# Go itself: the toolchain module of GO_VERSION (what Go's own toolchain
# switching downloads), fetched through the module proxy by Debian's older
# Go, which is removed again. Module zips keep no file modes: the
# executables get theirs back.
RUN set -e; \
	arch=$(dpkg --print-architecture); \
	mod=golang.org/toolchain@v0.0.1-go${GO_VERSION}.linux-${arch}; \
	json=$(cd /tmp && GOPATH=/tmp/gotc GOFLAGS=-modcacherw /usr/lib/go-1.19/bin/go mod download -json "$mod"); \
	dir=$(printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p'); \
	[ -n "$dir" ] || { echo "$json" >&2; exit 1; }; \
	cp -a "$dir" /usr/local/go; \
	chmod -R u+w /usr/local/go; \
	chmod +x /usr/local/go/bin/* /usr/local/go/pkg/tool/*/*; \
	rm -rf /tmp/gotc; \
	apt-get purge -y -qq golang-1.19-go golang-1.19-src >/dev/null; \
	apt-get autoremove -y -qq >/dev/null; \
	/usr/local/go/bin/go version

ENV PATH=/usr/local/go/bin:/root/go/bin:$PATH \
	GOTOOLCHAIN=local
# The work tree is mounted from the host: another owner's repository.
RUN git config --global --add safe.directory '*'
WORKDIR /src
CMD ["make", "release"]
