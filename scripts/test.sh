#!/usr/bin/env bash
# The whole test suite: unit tests, then the end-to-end suites on real tally-node processes.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
. scripts/env.sh
cargo build -p tally-node -p tally-client --bins
export TALLY_NODE_BIN="$CARGO_TARGET_DIR/debug/tally-node"
export TALLY_CTL_BIN="$CARGO_TARGET_DIR/debug/tallyctl"
# End-to-end suites start several nodes each; one suite at a time keeps the 2-core machine sane.
cargo test --workspace --no-fail-fast -- --test-threads=2 "$@"
