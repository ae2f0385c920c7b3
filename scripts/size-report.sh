#!/usr/bin/env bash
# Prints the download size of kedge: the binary raw, gzip -9 and zstd -19
# (what a release download weighs), and the embedded helper assets, raw
# (pkg/embedded/assets) and as packed into the binary (pkg/embedded/packed).
#
#   scripts/size-report.sh [path/to/kedge]     # default bin/kedge (make build)
#
# zstd -19 of the ~180 MB binary takes a minute or two.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
bin=${1:-bin/kedge}
[ -f "$bin" ] || { echo "size-report: $bin not found (make build)" >&2; exit 1; }
command -v zstd >/dev/null || { echo "size-report: zstd not found (Debian: zstd)" >&2; exit 1; }

mb() { awk -v b="$1" 'BEGIN { printf "%7.1f MB", b / 1e6 }'; }
row() { printf '%-34s %s  %12d\n' "$1" "$(mb "$2")" "$2"; }

raw=$(stat -c %s "$bin")
gz=$(gzip -9 -c "$bin" | wc -c)
zst=$(zstd -19 -T0 -q -c "$bin" | wc -c)
echo "kedge binary ($bin)"
row "  raw" "$raw"
row "  gzip -9" "$gz"
row "  zstd -19" "$zst"

assets=pkg/embedded/assets
if [ -d "$assets/bin" ]; then
	echo "embedded assets ($assets, raw)"
	total=0
	for f in "$assets"/bin/* "$assets"/images/*; do
		[ -f "$f" ] || continue
		s=$(stat -c %s "$f")
		total=$((total + s))
		row "  ${f#"$assets"/}" "$s"
	done
	row "  total" "$total"
fi
packed=pkg/embedded/packed/assets.tar.zst
if [ -f "$packed" ]; then
	echo "embedded in the binary"
	row "  ${packed#pkg/embedded/}" "$(stat -c %s "$packed")"
fi
