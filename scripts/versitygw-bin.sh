#!/usr/bin/env bash
# Provides the Versity S3 Gateway (Apache-2.0) that the backup tests store backups in: a real
# S3 server, started by the tests on loopback with its posix backend on a temporary folder.
#
#   scripts/versitygw-bin.sh     # progress on stderr, the binary's path on the last stdout line
#
# - If TALLY_VERSITYGW_BIN names an executable, it is used and nothing is built.
# - Otherwise `versitygw` is built once from its Go module
#   (github.com/versity/versitygw/cmd/versitygw@v<version>) with the machine's Go and cached,
#   keyed by version, in ${TALLY_CACHE:-$HOME/.cache/tally}/versitygw/v<version>/ (outside the
#   clone); later calls reuse it. GOMODCACHE and GOCACHE keep Go's defaults.
#
# Environment: TALLY_VERSITYGW_VERSION (default below), GO (the go command; default: `go` on
# PATH, else /usr/local/go/bin/go), TALLY_VERSITYGW_NO_BUILD=1 (only report what is cached;
# fail otherwise).
set -euo pipefail

VERSION="${TALLY_VERSITYGW_VERSION:-1.8.0}"
VERSION="${VERSION#v}"
MODULE=github.com/versity/versitygw

log() { echo "versitygw-bin: $*" >&2; }
die() { echo "versitygw-bin: error: $*" >&2; exit 1; }

# 1. A prebuilt binary from the user.
if [ -n "${TALLY_VERSITYGW_BIN:-}" ]; then
  [ -x "$TALLY_VERSITYGW_BIN" ] || die "TALLY_VERSITYGW_BIN=$TALLY_VERSITYGW_BIN is not executable; unset it to build from the Go module"
  log "using prebuilt $TALLY_VERSITYGW_BIN"
  echo "$TALLY_VERSITYGW_BIN"
  exit 0
fi

cache="${TALLY_CACHE:-$HOME/.cache/tally}/versitygw/v$VERSION"
bin="$cache/versitygw"

# `go install pkg@version` stamps no version that `versitygw --version` prints (it says
# "git"), so the cache folder's version is the key; a binary that does not run is rebuilt.
have() {
  [ -x "$bin" ] && "$bin" --version >/dev/null 2>&1
}

if have; then
  log "cached: $bin"
  echo "$bin"
  exit 0
fi

[ "${TALLY_VERSITYGW_NO_BUILD:-}" != 1 ] ||
  die "versitygw v$VERSION is not built in $cache and TALLY_VERSITYGW_NO_BUILD=1"

# 2. Build from the Go module.
GO="${GO:-}"
if [ -z "$GO" ]; then
  if command -v go >/dev/null 2>&1; then GO="$(command -v go)"
  elif [ -x /usr/local/go/bin/go ]; then GO=/usr/local/go/bin/go
  else
    die "no Go toolchain (looked for 'go' on PATH and /usr/local/go/bin/go); install Go, set GO=/path/to/go, or set TALLY_VERSITYGW_BIN"
  fi
fi
"$GO" version >/dev/null 2>&1 || die "'$GO version' failed; set GO to a working go command"

mkdir -p "$cache"
# One build at a time per version (two test runs may ask at once).
exec 9>"$cache/.lock"
if command -v flock >/dev/null 2>&1; then
  flock 9
  if have; then log "cached (built by another run): $bin"; echo "$bin"; exit 0; fi
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/tally-versitygw-bin.XXXXXX")"
trap 'rm -rf "$work"' EXIT

start=$(date +%s)
log "building $MODULE/cmd/versitygw@v$VERSION with $("$GO" version | cut -d' ' -f3); a few minutes from a cold module cache"
# Outside any module, exactly as released; GOTOOLCHAIN=local keeps to the machine's Go.
GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-trimpath GOBIN="$work" \
  "$GO" install -ldflags "-s -w" "$MODULE/cmd/versitygw@v$VERSION" ||
  die "go install $MODULE/cmd/versitygw@v$VERSION failed; see the output above"
[ -x "$work/versitygw" ] || die "the build did not produce versitygw"
mv -f "$work/versitygw" "$bin"
{
  echo "versitygw v$VERSION"
  "$GO" version
} >"$cache/VERSIONS"
have || die "built $bin but it does not run"
log "built in $(($(date +%s) - start))s: $bin"
echo "$bin"
