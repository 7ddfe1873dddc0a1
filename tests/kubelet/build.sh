#!/usr/bin/env bash
# Builds the real kubelet v1.36.3 (with a `fake-cri` subcommand serving the
# upstream in-memory container runtime, see main.go) from the same Go modules
# as the test control plane, once, and caches it; prints the binary's path
# (see ../go-build.sh).
exec "$(dirname "${BASH_SOURCE[0]}")/../go-build.sh" "$(dirname "${BASH_SOURCE[0]}")" kubelet
