#!/usr/bin/env bash
# Prints a ConfigMap holding one example contract's module, and a Chaincode pinning its sha256,
# for the manifests in deploy/examples (which embed them, so `tallyctl up -f` and
# `kubectl apply -f` need no build step).
#   scripts/chaincode-configmap.sh CONTRACT CHANNEL [CHAINCODE-RESOURCE-NAME]
# Rebuilds chaincode/contracts/CONTRACT with chaincode/build.sh (clang and wasm-ld). Another
# compiler version may produce other bytes, and so another sha256: regenerate both together.
set -euo pipefail
contract="${1:?usage: scripts/chaincode-configmap.sh CONTRACT CHANNEL [NAME]}"
channel="${2:?usage: scripts/chaincode-configmap.sh CONTRACT CHANNEL [NAME]}"
name="${3:-$contract}"
here="$(cd "$(dirname "$0")/.." && pwd)"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
"$here/chaincode/build.sh" "$out" >&2
wasm="$out/$contract.wasm"
sha="$(sha256sum "$wasm" | cut -c1-64)"
cat <<YAML
apiVersion: v1
kind: ConfigMap
metadata:
  name: $name-wasm
binaryData:
  # chaincode/contracts/$contract built by chaincode/build.sh; sha256 $sha
  $contract.wasm: $(base64 -w0 "$wasm")
YAML
echo "# sha256 for the Chaincode: $sha" >&2
