#!/usr/bin/env bash
# Tally's main job on one machine: the quickstart consortium (deploy/examples/quickstart.yaml),
# planned exactly as the operator would plan it, run as local tally-node processes on loopback.
# Serves the web console (tally-console) for the first organization. Stays in the foreground
# until Ctrl-C; running it again resumes the same ledger.
# Extra arguments go to `tallyctl up` (e.g. `-f deploy/examples/smart-city.yaml` for another
# consortium; the data directory is .tally/<consortium name>).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
. scripts/env.sh
cargo build -p tally-node -p tallyctl -p tally-console --bins
T="$CARGO_TARGET_DIR/debug"
if [[ " $* " == *" -f "* || " $* " == *" --file"* ]]; then
  exec "$T/tallyctl" up --node-bin "$T/tally-node" "$@"
fi
exec "$T/tallyctl" up --node-bin "$T/tally-node" -f deploy/examples/quickstart.yaml "$@"
