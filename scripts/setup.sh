#!/usr/bin/env bash
# Installs what building and testing Tally needs on a Debian machine, and nothing twice.
# Rust (cargo) must already be installed; system packages come from apt-get.
set -euo pipefail

need=()
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
# protoc for raft-proto, libclang for RocksDB's bindings, etcd-server for the benchmark's peer,
# prometheus for dashboard and alert checks.
for p in protobuf-compiler libclang-dev clang etcd-server etcd-client; do
  have_pkg "$p" || need+=("$p")
done
if ((${#need[@]})); then
  echo "setup: installing ${need[*]}" >&2
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# Debian's etcd-server package starts a system etcd on the default ports; Tally's benchmark
# starts its own members on free ports, so the system one is only in the way.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet etcd 2>/dev/null; then
  systemctl stop etcd || true
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo is not installed; install Rust (1.85 or newer) first" >&2
  exit 1
fi
