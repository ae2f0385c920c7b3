#!/usr/bin/env bash
# Prints kedge's version: the Kubernetes version it embeds (go.mod's
# k8s.io/kubernetes) plus kedge's build number, from the git tags
# v<kubernetes>+kedge<N>:
#
#   v1.37.2+kedge1                 HEAD is tagged v1.37.2+kedge1
#   v1.37.2+kedge1-3-g0ea5c7a      3 commits after that tag
#   v1.37.2+kedge0-0ea5c7a         no tag for this Kubernetes version yet
#   ...-dirty                      the work tree has uncommitted changes
#
#   scripts/version.sh             # the work tree (the Makefile's VERSION)
#   scripts/version.sh HEAD        # a commit as committed (release builds): never -dirty
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
GO=${GO:-go}
k8s=$($GO list -m -f '{{.Version}}' k8s.io/kubernetes) || {
	echo "version.sh: go.mod requires no k8s.io/kubernetes" >&2
	exit 1
}
rev=${1:-}
if [ -n "$rev" ]; then
	describe=(git describe --tags --match "$k8s+kedge*" "$rev")
	commit=(git rev-parse --short "$rev")
	dirty=
else
	describe=(git describe --tags --match "$k8s+kedge*" --dirty)
	commit=(git rev-parse --short HEAD)
	dirty=
	git diff --quiet HEAD 2>/dev/null || dirty=-dirty
fi
if v=$("${describe[@]}" 2>/dev/null); then
	echo "$v"
elif c=$("${commit[@]}" 2>/dev/null); then
	echo "$k8s+kedge0-$c$dirty"
else
	echo "$k8s+kedge0" # not a git checkout (a source archive)
fi
