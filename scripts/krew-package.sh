#!/usr/bin/env bash
# Packages the kubectl plugin for krew: an archive with kubectl-tally and the licence, and
# deploy/krew/tally.yaml with the archive's address and SHA-256 filled in.
#
#   scripts/krew-package.sh [--bin PATH] [--uri URI] [OUT_DIR]
#
# --bin   the kubectl-tally to package (default: a release build, made here)
# --uri   where the archive will be downloaded from (default: file:// of the archive)
# OUT_DIR default dist/krew
set -euo pipefail
cd "$(dirname "$0")/.."
bin=""
uri=""
out="dist/krew"
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) bin="$2"; shift 2 ;;
    --uri) uri="$2"; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    -*) echo "krew-package.sh: unknown option $1" >&2; exit 2 ;;
    *) out="$1"; shift ;;
  esac
done
if [ -z "$bin" ]; then
  . scripts/env.sh
  cargo build --release -p tallyctl --bin kubectl-tally
  bin="$CARGO_TARGET_DIR/release/kubectl-tally"
fi
[ -x "$bin" ] || { echo "krew-package.sh: $bin is not an executable" >&2; exit 1; }
mkdir -p "$out"
out="$(cd "$out" && pwd)"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
cp "$bin" "$stage/kubectl-tally"
printf 'Apache-2.0; see https://www.apache.org/licenses/LICENSE-2.0\n' > "$stage/LICENSE"
archive="$out/kubectl-tally-linux-amd64.tar.gz"
# A reproducible archive: fixed order, owner and times.
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime='@0' \
  -C "$stage" -czf "$archive" kubectl-tally LICENSE
sum="$(sha256sum "$archive" | cut -d' ' -f1)"
[ -n "$uri" ] || uri="file://$archive"
sed -e "s|ARCHIVE_URI|$uri|" -e "s|ARCHIVE_SHA256|$sum|" deploy/krew/tally.yaml > "$out/tally.yaml"
echo "wrote $archive (sha256 $sum) and $out/tally.yaml"
