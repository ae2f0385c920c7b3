#!/usr/bin/env bash
# Installs the host packages kedge's build and tests need on a fresh Debian
# machine that already has Go and gcc. Idempotent; run as root.
set -euo pipefail
# shellcheck and systemd (systemd-analyze): make install-check lints install.sh and verifies its unit;
# debootstrap: make image-check builds the node image's file system from a Debian base.
pkgs=(make iptables iproute2 procps ca-certificates libseccomp-dev pkg-config zstd shellcheck systemd debootstrap)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
