#!/usr/bin/env bash
# The whole test suite: unit tests, then the end-to-end suites on real tally-node processes.
#   scripts/test.sh              everything
#   scripts/test.sh --operator   only the operator's end-to-end suite on a real control plane
set -euo pipefail
only=()
if [ "${1:-}" = "--operator" ]; then
  shift
  only=(-p tally-tests --test operator_e2e)
fi
cd "$(dirname "$0")/.."
./scripts/setup.sh
. scripts/env.sh
cargo build -p tally-node -p tallyctl -p tally-operator -p tally-console --bins
export TALLY_NODE_BIN="$CARGO_TARGET_DIR/debug/tally-node"
export TALLY_CTL_BIN="$CARGO_TARGET_DIR/debug/tallyctl"
export TALLY_OPERATOR_BIN="$CARGO_TARGET_DIR/debug/tally-operator"
export TALLY_CONSOLE_BIN="$CARGO_TARGET_DIR/debug/tally-console"
# The operator's suites run a real etcd and kube-apiserver: built once from Go modules and cached
# outside the clone (or taken from KUBEBUILDER_ASSETS); see docs/testing.md.
# TALLY_SKIP_K8S=1 skips building them (and the suites that need them, where none are found).
if [ -z "${TALLY_K8S_BIN:-}" ] && [ "${TALLY_SKIP_K8S:-}" != 1 ]; then
  TALLY_K8S_BIN="$(./scripts/k8s-bins.sh | tail -n 1)"
  export TALLY_K8S_BIN
fi
# The backup suite stores backups in a real S3 server (Versity Gateway), built like the above.
if [ -z "${TALLY_VERSITYGW_BIN:-}" ]; then
  TALLY_VERSITYGW_BIN="$(./scripts/versitygw-bin.sh | tail -n 1)"
  export TALLY_VERSITYGW_BIN
fi
# End-to-end suites start several nodes each; one suite at a time keeps the 2-core machine sane.
if ((${#only[@]})); then
  cargo test "${only[@]}" -- --nocapture "$@"
else
  cargo test --workspace --no-fail-fast -- --test-threads=2 "$@"
fi
