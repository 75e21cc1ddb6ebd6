#!/usr/bin/env bash
# Installs the kubectl plugin from this repository: builds kubectl-tally (release) and puts it
# in a folder on the PATH, where kubectl finds it as `kubectl tally`.
#
#   scripts/install-plugin.sh [DIR]     (default: ~/.local/bin)
set -euo pipefail
cd "$(dirname "$0")/.."
dest="${1:-$HOME/.local/bin}"
case "$dest" in -h|--help) sed -n '2,6p' "$0"; exit 0 ;; esac
. scripts/env.sh
cargo build --release -p tallyctl --bin kubectl-tally
mkdir -p "$dest"
install -m 0755 "$CARGO_TARGET_DIR/release/kubectl-tally" "$dest/kubectl-tally"
echo "installed $dest/kubectl-tally"
case ":$PATH:" in
  *":$dest:"*) kubectl plugin list 2>/dev/null | grep -q kubectl-tally && echo "kubectl tally is ready" || true ;;
  *) echo "add $dest to PATH so that kubectl finds it" ;;
esac
