#!/usr/bin/env bash
# Builds the test control plane (kube-apiserver + etcd in one Go binary) once
# and caches it; prints the binary's path (see ../go-build.sh).
exec "$(dirname "${BASH_SOURCE[0]}")/../go-build.sh" "$(dirname "${BASH_SOURCE[0]}")" control-plane
