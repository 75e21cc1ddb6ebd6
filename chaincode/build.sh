#!/usr/bin/env bash
# Builds every contract in contracts/ and every test fixture in fixtures/ from C to wasm32.
#   chaincode/build.sh OUTDIR      writes OUTDIR/<name>.wasm, one per folder
# Needs clang and wasm-ld (Debian's clang-14 and lld-14; scripts/setup.sh installs them).
# TALLY_WASM_CC overrides the compiler.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:?usage: chaincode/build.sh OUTDIR}"
mkdir -p "$out"
cc="${TALLY_WASM_CC:-}"
if [ -z "$cc" ]; then
  for c in clang-14 clang; do
    if command -v "$c" >/dev/null 2>&1; then cc="$c"; break; fi
  done
fi
[ -n "$cc" ] || { echo "build.sh: no clang found (run scripts/setup.sh)" >&2; exit 2; }
# clang finds wasm-ld next to itself (Debian: /usr/lib/llvm-14/bin) or on PATH.
ld_dir="$(dirname "$(readlink -f "$(command -v "$cc")")")"
if [ ! -x "$ld_dir/wasm-ld" ] && ! command -v wasm-ld >/dev/null 2>&1; then
  echo "build.sh: no wasm-ld found (Debian package lld-14; run scripts/setup.sh)" >&2
  exit 2
fi
# Freestanding: no libc, no builtins that could pull in libc symbols, every warning an error.
# --no-entry: a contract has no main, only its exports; --strip-all drops names the runtime
# ignores anyway. A 64 KiB stack is plenty for contracts that keep data on the heap.
flags=(--target=wasm32 -mbulk-memory -O2 -std=c11 -ffreestanding -nostdlib -fno-builtin
  -Wall -Wextra -Werror -I"$here/sdk"
  -Wl,--no-entry -Wl,--strip-all -Wl,-z,stack-size=65536)
for dir in "$here"/contracts/*/ "$here"/fixtures/*/; do
  name="$(basename "$dir")"
  "$cc" "${flags[@]}" -o "$out/$name.wasm" "$here/sdk/tally.c" "$dir"*.c
done
