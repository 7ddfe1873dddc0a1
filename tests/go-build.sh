#!/usr/bin/env bash
# Builds a Go test harness of this repository (a directory with its own Go
# module: the control plane, kubeadm) once and caches it, keyed on its
# sources, module files and this script; prints the binary's path. Kubernetes
# version ldflags are set so /version and `kubeadm version` say v1.36.3.
# Usage: go-build.sh DIR NAME [PACKAGE]   (PACKAGE: default the module's own main)
set -euo pipefail
dir="$(cd "$1" && pwd)"
name="$2"
package="${3:-.}"
k8s_version="v1.36.3"
cache="${CERTOP_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/certop}"
key="$(cd "$dir" && { cat go.mod go.sum ./*.go "${BASH_SOURCE[0]}"; echo "$package"; } | sha256sum | cut -c1-16)"
bin="$cache/$name-$key"
if [ ! -x "$bin" ]; then
  mkdir -p "$cache"
  major="${k8s_version#v}"; major="${major%%.*}"
  minor="${k8s_version#v*.}"; minor="${minor%%.*}"
  ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$k8s_version"
  ldflags+=" -X k8s.io/component-base/version.gitMajor=$major -X k8s.io/component-base/version.gitMinor=$minor"
  ldflags+=" -X k8s.io/component-base/version.gitTreeState=clean"
  echo "building $name (Kubernetes $k8s_version from Go modules); a cold build takes minutes" >&2
  # -v names each package as it compiles: a running count shows progress;
  # anything else Go says (errors have spaces, package paths do not) is shown.
  (cd "$dir" && go build -v -trimpath -ldflags "$ldflags" -o "$bin.tmp" "$package" 2>&1) |
    awk '{ n++; if (n % 200 == 0) printf "  %s: %d packages compiled\n", name, n > "/dev/stderr" }
         / / { print > "/dev/stderr" }' name="$name"
  mv "$bin.tmp" "$bin"
fi
echo "$bin"
