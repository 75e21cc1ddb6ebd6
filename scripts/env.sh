# Sourced by the other scripts: build caches live outside the clone so repeat runs are fast.
export TALLY_CACHE="${TALLY_CACHE:-$HOME/.cache/tally}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$TALLY_CACHE/target}"
mkdir -p "$CARGO_TARGET_DIR"
