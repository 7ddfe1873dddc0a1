#!/usr/bin/env bash
# Builds kubeadm v1.36.3 from the same Go modules as the test control plane,
# once, and caches it; prints the binary's path (see ../go-build.sh).
exec "$(dirname "${BASH_SOURCE[0]}")/../go-build.sh" "$(dirname "${BASH_SOURCE[0]}")" kubeadm
