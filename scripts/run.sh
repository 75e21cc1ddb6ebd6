#!/usr/bin/env bash
# Tally's main job on one machine: a local 3-node consortium on loopback with a demo load.
# Stays in the foreground until Ctrl-C. Extra arguments go to `tallyctl demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
. scripts/env.sh
cargo build -p tally-node -p tally-client --bins
exec "$CARGO_TARGET_DIR/debug/tallyctl" demo --node-bin "$CARGO_TARGET_DIR/debug/tally-node" "$@"
