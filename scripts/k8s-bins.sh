#!/usr/bin/env bash
# Provides the Kubernetes control-plane binaries the operator's tests run for real:
# etcd, kube-apiserver and kube-controller-manager (and kubectl and helm, so that the suites
# do not depend on what the machine has).
#
#   scripts/k8s-bins.sh          # prints progress on stderr, the bin folder on the last stdout line
#
# - If KUBEBUILDER_ASSETS names a folder holding `etcd` and `kube-apiserver` (the
#   controller-runtime envtest convention), that folder is used and nothing is built.
# - Otherwise the binaries are built once from Go modules and cached, keyed by version, in
#   ${TALLY_CACHE:-$HOME/.cache/tally}/k8s/v<version>/bin (outside the clone). A small wrapper
#   module requires k8s.io/kubernetes v1.N.x and pins every k8s.io/* staging module with a
#   `replace` to the matching v0.N.x; etcd is built from go.etcd.io/etcd/server/v3 at the
#   version that Kubernetes release itself requires. helm is built from helm.sh/helm/v3/cmd/helm
#   at a pinned release (its version and Kubernetes version stamped in as helm's Makefile does)
#   into the same folder; a component already there is not built again. GOMODCACHE and GOCACHE
#   keep Go's defaults.
#
# Environment: TALLY_K8S_VERSION (default below), GO (the go command; default: `go` on PATH,
# else /usr/local/go/bin/go), TALLY_K8S_COMPONENTS (default "etcd kube-apiserver
# kube-controller-manager kubectl helm": kubectl too, so that nothing depends on the machine having
# one, and its version matches the apiserver's; helm for the chart suite), TALLY_HELM_VERSION
# (default below), TALLY_K8S_NO_BUILD=1 (only report what is cached; fail otherwise).
set -euo pipefail

K8S_VERSION="${TALLY_K8S_VERSION:-1.34.4}"
K8S_VERSION="${K8S_VERSION#v}"
# Helm 3.19 is built on the Kubernetes 1.34 libraries, like the control plane above.
HELM_VERSION="${TALLY_HELM_VERSION:-3.19.5}"
HELM_VERSION="${HELM_VERSION#v}"
COMPONENTS="${TALLY_K8S_COMPONENTS:-etcd kube-apiserver kube-controller-manager kubectl helm}"

log() { echo "k8s-bins: $*" >&2; }
die() { echo "k8s-bins: error: $*" >&2; exit 1; }

# 1. Prebuilt binaries from the user (envtest's convention).
if [ -n "${KUBEBUILDER_ASSETS:-}" ]; then
  for b in etcd kube-apiserver; do
    [ -x "$KUBEBUILDER_ASSETS/$b" ] ||
      die "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS has no executable '$b'; unset it to build from Go modules"
  done
  log "using prebuilt binaries from KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS"
  if [ ! -x "$KUBEBUILDER_ASSETS/helm" ] && ! command -v helm >/dev/null 2>&1; then
    log "note: no helm in KUBEBUILDER_ASSETS nor on PATH; the chart suite needs one (put it on PATH or set TALLY_HELM)"
  fi
  echo "$KUBEBUILDER_ASSETS"
  exit 0
fi

cache="${TALLY_CACHE:-$HOME/.cache/tally}/k8s/v$K8S_VERSION"
bin="$cache/bin"

# A component is present when its binary is; helm also when it is the pinned version.
have() {
  [ -x "$bin/$1" ] || return 1
  [ "$1" != helm ] || [ "$("$bin/helm" version --template '{{.Version}}' 2>/dev/null)" = "v$HELM_VERSION" ]
}
missing() {
  local c out=()
  for c in $COMPONENTS; do have "$c" || out+=("$c"); done
  echo "${out[*]}"
}
have_all() { [ -z "$(missing)" ]; }

if have_all; then
  log "cached: $bin"
  echo "$bin"
  exit 0
fi

[ "${TALLY_K8S_NO_BUILD:-}" != 1 ] ||
  die "Kubernetes v$K8S_VERSION is not built in $bin (missing: $(missing)) and TALLY_K8S_NO_BUILD=1"

# 2. Build from Go modules.
GO="${GO:-}"
if [ -z "$GO" ]; then
  if command -v go >/dev/null 2>&1; then GO="$(command -v go)"
  elif [ -x /usr/local/go/bin/go ]; then GO=/usr/local/go/bin/go
  else
    die "no Go toolchain (looked for 'go' on PATH and /usr/local/go/bin/go); install Go 1.24 or newer, set GO=/path/to/go, or point KUBEBUILDER_ASSETS at a folder with etcd and kube-apiserver"
  fi
fi
"$GO" version >/dev/null 2>&1 || die "'$GO version' failed; set GO to a working go command (1.24 or newer)"

mkdir -p "$cache"
# One build at a time per version (two test runs may ask at once).
exec 9>"$cache/.lock"
if command -v flock >/dev/null 2>&1; then
  flock 9
  if have_all; then log "cached (built by another run): $bin"; echo "$bin"; exit 0; fi
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/tally-k8s-bins.XXXXXX")"
trap 'rm -rf "$work"' EXIT
cd "$work"

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-trimpath -mod=mod"
start=$(date +%s)
todo="$(missing)"
k8s_todo=""
for c in $todo; do [ "$c" = helm ] || k8s_todo="${k8s_todo:+$k8s_todo }$c"; done
mkdir -p "$bin"

build_k8s() {
  log "building Kubernetes v$K8S_VERSION ($k8s_todo) with $("$GO" version | cut -d' ' -f3); this takes a while on a cold cache"

  # The Kubernetes go.mod lists its staging modules (replaced by ./staging/... in its own repo,
  # which does not apply to a dependency); pin each to the matching v0.N.x release instead.
  gomod="$("$GO" mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p')"
  [ -n "$gomod" ] && [ -f "$gomod" ] || die "could not download k8s.io/kubernetes@v$K8S_VERSION from the module proxy ($("$GO" env GOPROXY))"
  staging_version="v0.${K8S_VERSION#*.}"
  go_line="$(grep -m1 -E '^go [0-9]' "$gomod")"
  etcd_version="$(sed -n 's|^[[:space:]]*go.etcd.io/etcd/server/v3 \(v[^ ]*\).*|\1|p' "$gomod" | head -1)"
  [ -n "$etcd_version" ] || die "k8s.io/kubernetes@v$K8S_VERSION does not name a go.etcd.io/etcd/server/v3 version"
  {
    echo "module tally.local/k8s-bins"
    echo
    echo "$go_line"
    echo
    echo "require ("
    echo "	k8s.io/kubernetes v$K8S_VERSION"
    echo "	go.etcd.io/etcd/server/v3 $etcd_version"
    echo ")"
    echo
    echo "replace ("
    sed -n 's|^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/src/k8s.io/.*|\1|p' "$gomod" |
      while read -r m; do echo "	$m => $m $staging_version"; done
    echo ")"
  } >go.mod
  log "wrapper module: $(grep -c '=> k8s.io' go.mod) staging modules pinned to $staging_version, etcd $etcd_version"

  pkgs=()
  for c in $k8s_todo; do
    case "$c" in
      etcd) pkgs+=(go.etcd.io/etcd/server/v3) ;;
      kube-apiserver | kube-controller-manager | kube-scheduler | kubectl) pkgs+=("k8s.io/kubernetes/cmd/$c") ;;
      *) die "unknown component '$c'" ;;
    esac
  done

  minor="${K8S_VERSION#*.}"; minor="${minor%%.*}"
  vpkg=k8s.io/component-base/version
  ldflags="-s -w -X $vpkg.gitVersion=v$K8S_VERSION -X $vpkg.gitMajor=1 -X $vpkg.gitMinor=$minor -X $vpkg.gitTreeState=clean"
  ldflags+=" -X $vpkg.buildDate=1970-01-01T00:00:00Z"
  out="$work/out"
  mkdir -p "$out"
  log "go build ${pkgs[*]}"
  "$GO" build -ldflags "$ldflags" -o "$out/" "${pkgs[@]}" ||
    die "go build failed (Kubernetes v$K8S_VERSION with $("$GO" version | cut -d' ' -f3)); see the output above"
  # go.etcd.io/etcd/server/v3 builds to a binary named `server` (the major-version suffix is
  # dropped from the name).
  if [ -x "$out/server" ]; then mv "$out/server" "$out/etcd"; fi
  for c in $k8s_todo; do [ -x "$out/$c" ] || die "the build did not produce $c"; done

  for c in $k8s_todo; do mv -f "$out/$c" "$bin/$c"; done
  {
    echo "kubernetes v$K8S_VERSION"
    echo "etcd $etcd_version"
    "$GO" version
    grep '^helm ' "$cache/VERSIONS" 2>/dev/null || true
  } >"$cache/VERSIONS.new"
  mv -f "$cache/VERSIONS.new" "$cache/VERSIONS"
}

# helm has no `replace` in its go.mod, so `go install helm.sh/helm/v3/cmd/helm@v<version>` builds
# it as released. The -X flags are those of helm's Makefile: its version, and the Kubernetes
# version it assumes by default (`.Capabilities.KubeVersion`, deprecation checks in `helm lint`),
# taken from the k8s.io/client-go it requires.
build_helm() {
  log "building helm v$HELM_VERSION with $("$GO" version | cut -d' ' -f3)"
  local gomod minor ldflags h=helm.sh/helm/v3
  gomod="$("$GO" mod download -json "$h@v$HELM_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p')"
  [ -n "$gomod" ] && [ -f "$gomod" ] || die "could not download $h@v$HELM_VERSION from the module proxy ($("$GO" env GOPROXY))"
  minor="$(sed -n 's|^[[:space:]]*k8s.io/client-go v0\.\([0-9]*\)\..*|\1|p' "$gomod" | head -1)"
  [ -n "$minor" ] || die "$h@v$HELM_VERSION does not name a k8s.io/client-go version"
  ldflags="-s -w -X $h/internal/version.version=v$HELM_VERSION -X $h/internal/version.gitTreeState=clean"
  ldflags+=" -X $h/pkg/lint/rules.k8sVersionMajor=1 -X $h/pkg/lint/rules.k8sVersionMinor=$minor"
  ldflags+=" -X $h/pkg/chartutil.k8sVersionMajor=1 -X $h/pkg/chartutil.k8sVersionMinor=$minor"
  mkdir -p "$work/helm-bin"
  # `go install pkg@version` builds outside any module; -mod does not apply there.
  GOFLAGS=-trimpath GOBIN="$work/helm-bin" "$GO" install -ldflags "$ldflags" "$h/cmd/helm@v$HELM_VERSION" ||
    die "go install $h/cmd/helm@v$HELM_VERSION failed; see the output above"
  mv -f "$work/helm-bin/helm" "$bin/helm"
  {
    grep -v '^helm ' "$cache/VERSIONS" 2>/dev/null || true
    echo "helm v$HELM_VERSION (Kubernetes 1.$minor libraries)"
  } >"$cache/VERSIONS.new"
  mv -f "$cache/VERSIONS.new" "$cache/VERSIONS"
}

[ -z "$k8s_todo" ] || build_k8s
case " $todo " in *" helm "*) build_helm ;; esac
have_all || die "still missing after the build: $(missing)"
log "built $todo in $(($(date +%s) - start))s: $(du -sh "$bin" | cut -f1) in $bin"
echo "$bin"
