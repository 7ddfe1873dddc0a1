#!/usr/bin/env bash
# Builds the test control plane (kube-apiserver + etcd in one Go binary) once
# and caches it, keyed on its sources and module files; prints the binary's path.
# A warm call costs a hash of a few files; a cold one compiles Kubernetes.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
k8s_version="v1.36.3"
cache="${CERTOP_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/certop}"
key="$(cd "$here" && cat go.mod go.sum ./*.go build.sh | sha256sum | cut -c1-16)"
bin="$cache/control-plane-$key"
if [ ! -x "$bin" ]; then
  mkdir -p "$cache"
  major="${k8s_version#v}"; major="${major%%.*}"
  minor="${k8s_version#v*.}"; minor="${minor%%.*}"
  ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$k8s_version"
  ldflags+=" -X k8s.io/component-base/version.gitMajor=$major -X k8s.io/component-base/version.gitMinor=$minor"
  ldflags+=" -X k8s.io/component-base/version.gitTreeState=clean"
  echo "building the test control plane (kube-apiserver $k8s_version + etcd); a cold build takes a while" >&2
  (cd "$here" && go build -trimpath -ldflags "$ldflags" -o "$bin.tmp" .)
  mv "$bin.tmp" "$bin"
fi
echo "$bin"
