#!/usr/bin/env bash
# Builds the real kube-apiserver and kube-controller-manager that the end-to-end tests run,
# from Debian's `kubernetes` source package, once per machine.
#
#   test/support/build-kube.sh           build if the cache is missing; print the cache dir
#   test/support/build-kube.sh --dir     print the cache dir if it is complete, else exit 1 (no network, no build)
#
# Output: /var/cache/agentgate/kube-<debian-version>/bin/{kube-apiserver,kube-controller-manager}
# (override the root with AGENTGATE_KUBE_CACHE). Only the two binaries are kept; the
# source tree and Go build cache are removed after a successful build.
#
# Why a source build: Debian bookworm ships no kube-apiserver binary package, and the
# upstream release binaries would be a download from outside the distribution. The
# vendored github.com/modern-go/reflect2 1.0.1 of Kubernetes 1.20 crashes (SIGSEGV in
# reflect2.unsafeMapIterNext) under Go >= 1.18 the first time the API server applies a
# mutating webhook's JSONPatch, so it and json-iterator are replaced by Debian's
# reflect2 1.0.2 / json-iterator 1.1.12, which fix that, before building with Go 1.19.
set -euo pipefail

CACHE_ROOT=${AGENTGATE_KUBE_CACHE:-/var/cache/agentgate}
GO_BIN=/usr/lib/go-1.19/bin
DEBSRC_FILE=/etc/apt/sources.list.d/agentgate-deb-src.sources

log() { echo "build-kube: $*" >&2; }

# The Debian version of the kubernetes source, read from the local apt lists (no network).
source_version() {
  apt-cache showsrc kubernetes 2>/dev/null | awk '/^Version:/ {print $2; exit}'
}

complete_dir() {
  local d=$1
  [[ -x $d/bin/kube-apiserver && -x $d/bin/kube-controller-manager && -f $d/COMPLETE ]]
}

# Newest complete cache dir, for when apt cannot tell us the version (no deb-src yet).
any_complete_dir() {
  local d
  for d in $(ls -1d "$CACHE_ROOT"/kube-* 2>/dev/null | sort -rV); do
    if complete_dir "$d"; then echo "$d"; return 0; fi
  done
  return 1
}

# Everything runs inside main, so bash has parsed the whole file before it starts:
# editing or replacing this script while a build runs cannot derail that build.
main() {
  if [[ ${1-} == --dir ]]; then
    v=$(source_version || true)
    if [[ -n $v ]] && complete_dir "$CACHE_ROOT/kube-$v"; then echo "$CACHE_ROOT/kube-$v"; exit 0; fi
    any_complete_dir && exit 0
    exit 1
  fi

  mkdir -p "$CACHE_ROOT"
  # One build per machine even when two `make test` runs start together.
  exec 9>"$CACHE_ROOT/kube-build.lock"
  flock 9

  local v out
  v=$(source_version || true)
  if [[ -n $v ]] && complete_dir "$CACHE_ROOT/kube-$v"; then echo "$CACHE_ROOT/kube-$v"; exit 0; fi

  if [[ $(id -u) -ne 0 ]]; then
    log "the first build installs Debian packages and needs root (run: sudo $0)"; exit 1
  fi

  export DEBIAN_FRONTEND=noninteractive
  if [[ -z $v ]]; then
    # `apt-get source` needs deb-src entries; bookworm images ship only binary ones.
    if [[ ! -f $DEBSRC_FILE ]]; then
      log "adding deb-src entries for bookworm ($DEBSRC_FILE)"
      cat >"$DEBSRC_FILE" <<'EOF'
# Added by agentgate test/support/build-kube.sh: `apt-get source kubernetes` for the e2e API server.
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    fi
    log "apt-get update"
    apt-get update -qq
    v=$(source_version)
    [[ -n $v ]] || { log "apt knows no source package 'kubernetes'"; exit 1; }
    if complete_dir "$CACHE_ROOT/kube-$v"; then echo "$CACHE_ROOT/kube-$v"; exit 0; fi
  fi

  OUT=$CACHE_ROOT/kube-$v
  log "building kube-apiserver and kube-controller-manager $v into $OUT (first run only: about 5 min on 2 idle cores)"

  need=()
  for p in golang-1.19 etcd-server rsync dpkg-dev make; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need+=("$p")
  done
  if ((${#need[@]})); then
    log "apt-get install ${need[*]}"
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null || {
      apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; }
  fi

  WORK=$CACHE_ROOT/build-kube-$v
  rm -rf "$WORK"
  mkdir -p "$WORK/src"
  # apt downloads as the unprivileged _apt user when it can write the target dir.
  if id _apt >/dev/null 2>&1; then chown _apt "$WORK/src"; fi
  cd "$WORK/src"
  log "apt-get source kubernetes golang-github-modern-go-reflect2-dev golang-github-json-iterator-go-dev"
  apt-get source -qq --download-only kubernetes golang-github-modern-go-reflect2-dev golang-github-json-iterator-go-dev
  for dsc in *.dsc; do
    dpkg-source --no-check -x "$dsc" >/dev/null
  done

  K=$(ls -1d kubernetes-*/ | head -n1); K=${K%/}
  R=$(ls -1d golang-github-modern-go-reflect2-*/ | head -n1); R=${R%/}
  J=$(ls -1d golang-github-json-iterator-go-*/ | head -n1); J=${J%/}
  log "sources: $K, $R, $J"

  replace_vendor() {
    local from=$1 to=$K/vendor/$2
    [[ -d $to ]] || { log "expected vendored $2 in $K"; exit 1; }
    rsync -a --delete --exclude=debian/ --exclude=.pc/ --exclude=.git/ --exclude='*_test.go' \
      --exclude=.github/ --exclude=test/ --exclude=skip_tests/ --exclude=benchmarks/ --exclude=api_tests/ \
      --exclude=type_tests/ --exclude=extension_tests/ --exclude=misc_tests/ --exclude=any_tests/ \
      --exclude=value_tests/ --exclude=example_test.go \
      "$from/" "$to/"
  }
  replace_vendor "$R" github.com/modern-go/reflect2
  replace_vendor "$J" github.com/json-iterator/go

  cd "$K"
  # Offline: every dependency is in vendor/ (Go picks -mod=vendor itself from go.mod's go 1.15).
  # The version stamp (v1.20.2) comes from the git-archive substitutions in the source tree.
  export PATH=$GO_BIN:$PATH GOPROXY=off CGO_ENABLED=0
  export GOCACHE=$WORK/gocache GOPATH=$WORK/gopath
  log "$(go version)"
  for what in cmd/kube-apiserver cmd/kube-controller-manager; do
    log "make WHAT=$what"
    make WHAT=$what >&2
  done

  mkdir -p "$OUT/bin"
  for b in kube-apiserver kube-controller-manager; do
    f=$(find _output -type f -name "$b" -perm -u+x | head -n1)
    [[ -n $f ]] || { log "make did not produce $b"; exit 1; }
    install -m 0755 "$f" "$OUT/bin/$b"
  done
  {
    echo "debian-version=$v"
    echo "go=$(go version | awk '{print $3}')"
    echo "reflect2=$R"
    echo "json-iterator=$J"
    echo "built=$(date -u +%FT%TZ)"
  } >"$OUT/COMPLETE"
  cd /
  rm -rf "$WORK"
  log "done: $OUT"
  echo "$OUT"
}

main "$@"
exit
