#!/usr/bin/env bash
# Provides the CometBFT binary that `tally-bench --compare cometbft` runs next to Tally.
#
#   scripts/cometbft-bin.sh      # prints progress on stderr, the bin folder on the last stdout line
#
# - If TALLY_COMETBFT_BIN names an executable, its folder is used and nothing is built.
# - Otherwise `cometbft` is built once from its Go module
#   (github.com/cometbft/cometbft/cmd/cometbft@v<version>) with the machine's Go and cached,
#   keyed by version, in ${TALLY_CACHE:-$HOME/.cache/tally}/cometbft/v<version>/bin (outside
#   the clone); later calls reuse it. GOMODCACHE and GOCACHE keep Go's defaults.
#
# Environment: TALLY_COMETBFT_VERSION (default below), GO (the go command; default: `go` on
# PATH, else /usr/local/go/bin/go), TALLY_COMETBFT_NO_BUILD=1 (only report what is cached;
# fail otherwise).
set -euo pipefail

VERSION="${TALLY_COMETBFT_VERSION:-1.0.1}"
VERSION="${VERSION#v}"
MODULE=github.com/cometbft/cometbft

log() { echo "cometbft-bin: $*" >&2; }
die() { echo "cometbft-bin: error: $*" >&2; exit 1; }

# 1. A prebuilt binary from the user.
if [ -n "${TALLY_COMETBFT_BIN:-}" ]; then
  [ -x "$TALLY_COMETBFT_BIN" ] || die "TALLY_COMETBFT_BIN=$TALLY_COMETBFT_BIN is not executable; unset it to build from the Go module"
  log "using prebuilt $TALLY_COMETBFT_BIN ($("$TALLY_COMETBFT_BIN" version 2>/dev/null || echo 'version unknown'))"
  dirname "$TALLY_COMETBFT_BIN"
  exit 0
fi

cache="${TALLY_CACHE:-$HOME/.cache/tally}/cometbft/v$VERSION"
bin="$cache/bin"

# Present when the binary is there and says it is the pinned version (`cometbft version`
# prints the module version that `go install pkg@version` stamps into the build).
have() {
  [ -x "$bin/cometbft" ] && [ "$("$bin/cometbft" version 2>/dev/null)" = "$VERSION" ]
}

if have; then
  log "cached: $bin"
  echo "$bin"
  exit 0
fi

[ "${TALLY_COMETBFT_NO_BUILD:-}" != 1 ] ||
  die "CometBFT v$VERSION is not built in $bin and TALLY_COMETBFT_NO_BUILD=1"

# 2. Build from the Go module.
GO="${GO:-}"
if [ -z "$GO" ]; then
  if command -v go >/dev/null 2>&1; then GO="$(command -v go)"
  elif [ -x /usr/local/go/bin/go ]; then GO=/usr/local/go/bin/go
  else
    die "no Go toolchain (looked for 'go' on PATH and /usr/local/go/bin/go); install Go 1.22 or newer, set GO=/path/to/go, or set TALLY_COMETBFT_BIN"
  fi
fi
"$GO" version >/dev/null 2>&1 || die "'$GO version' failed; set GO to a working go command"

mkdir -p "$cache"
# One build at a time per version (two bench runs may ask at once).
exec 9>"$cache/.lock"
if command -v flock >/dev/null 2>&1; then
  flock 9
  if have; then log "cached (built by another run): $bin"; echo "$bin"; exit 0; fi
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/tally-cometbft-bin.XXXXXX")"
trap 'rm -rf "$work"' EXIT

start=$(date +%s)
log "building $MODULE/cmd/cometbft@v$VERSION with $("$GO" version | cut -d' ' -f3); a minute or two from a warm module cache"
# `go install pkg@version` builds outside any module, exactly as released (its go.mod has no
# `replace` directives); GOTOOLCHAIN=local keeps to the machine's Go rather than downloading one.
GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-trimpath GOBIN="$work" \
  "$GO" install -ldflags "-s -w" "$MODULE/cmd/cometbft@v$VERSION" ||
  die "go install $MODULE/cmd/cometbft@v$VERSION failed; see the output above"
[ -x "$work/cometbft" ] || die "the build did not produce cometbft"
mkdir -p "$bin"
mv -f "$work/cometbft" "$bin/cometbft"
{
  echo "cometbft v$VERSION"
  "$GO" version
} >"$cache/VERSIONS"
have || die "built $bin/cometbft but \`cometbft version\` does not print $VERSION (it prints: $("$bin/cometbft" version 2>&1 | head -1))"
log "built in $(($(date +%s) - start))s: $bin/cometbft"
echo "$bin"
