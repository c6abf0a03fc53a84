#!/usr/bin/env bash
# Installs what the tests and benchmarks need on a fresh machine: Debian packages
# listed in test/apt-packages.txt (only those missing) and the npm dependencies.
# Idempotent and quiet when there is nothing to do.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
while read -r pkg _; do
  [[ -z "$pkg" || "$pkg" == \#* ]] && continue
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done < test/apt-packages.txt

if [[ $(id -u) -ne 0 ]]; then SUDO=sudo; else SUDO=; fi
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq >/dev/null
  # The prometheus package starts a server by default; tests start their own.
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if command -v systemctl >/dev/null && systemctl is-active --quiet prometheus 2>/dev/null; then $SUDO systemctl stop prometheus || true; fi
fi

# The e2e suite's real Kubernetes control plane: built once per machine into /var/cache/agentgate.
if ! bash test/support/build-kube.sh --dir >/dev/null 2>&1; then
  echo "setup: building kube-apiserver/kube-controller-manager v1.20.2 from Debian's source (first run only, 5-20 min)"
  $SUDO bash test/support/build-kube.sh >/dev/null
fi

if [[ ! -d node_modules || package-lock.json -nt node_modules/.package-lock.json ]]; then
  echo "setup: installing npm dependencies"
  npm ci --no-audit --no-fund --loglevel=error
fi
