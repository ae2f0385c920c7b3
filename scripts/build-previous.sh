#!/usr/bin/env bash
# Builds the previous release line's kedge for the upgrade test and prints
# the binary's path: the newest commit on the first-parent history of HEAD
# whose go.mod embeds an older Kubernetes minor than HEAD's (the last 1.36
# commit once main embeds 1.37). The commit is built from git into a
# temporary worktree, version-stamped as usual, and cached:
#
#   scripts/build-previous.sh            # → /var/cache/kedge-e2e/kedge-<commit>
#   KEDGE_PREV_REF=<commit> scripts/build-previous.sh   # a chosen commit
#
# Exit status 3: no commit embeds an older minor (nothing to upgrade from).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
GO=${GO:-go}
cache=${KEDGE_PREV_CACHE:-/var/cache/kedge-e2e}

# minor <go.mod text>: the minor of its k8s.io/kubernetes requirement.
minor() { awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v1\./ { split($2, v, "."); print v[2]; exit }'; }

ref=${KEDGE_PREV_REF:-}
if [ -z "$ref" ]; then
	current=$(minor <go.mod)
	[ -n "$current" ] || { echo "build-previous.sh: go.mod requires no k8s.io/kubernetes v1.x" >&2; exit 1; }
	while read -r c; do
		m=$(git show "$c:go.mod" 2>/dev/null | minor || true)
		if [ -n "$m" ] && [ "$m" -lt "$current" ]; then
			ref=$c
			break
		fi
	done < <(git log --first-parent --format=%H HEAD)
	if [ -z "$ref" ]; then
		echo "build-previous.sh: no commit of HEAD's history embeds a Kubernetes minor older than 1.$current" >&2
		exit 3
	fi
fi
commit=$(git rev-parse --verify "$ref^{commit}")
out=$cache/kedge-$commit
if [ -x "$out" ]; then
	echo "$out"
	exit 0
fi

mkdir -p "$cache"
tree=$(mktemp -d /tmp/kedge-prev.XXXXXX)
cleanup() { git worktree remove --force "$tree" >/dev/null 2>&1 || rm -rf "$tree"; }
trap cleanup EXIT
git worktree add --detach "$tree" "$commit" >&2
echo "build-previous.sh: building $(git log -1 --format='%h %s' "$commit" | cut -c1-80)" >&2
make -C "$tree" build GO="$GO" BIN="$out.tmp" VERSION="$(cd "$tree" && scripts/version.sh HEAD)" >&2
mv "$out.tmp" "$out"
echo "$out"
