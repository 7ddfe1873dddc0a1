#!/usr/bin/env bash
# Builds cert-manager's controllers (see main.go) once and caches it; prints
# the binary's path. Only `make bench-compare` uses it.
exec "$(dirname "${BASH_SOURCE[0]}")/../go-build.sh" "$(dirname "${BASH_SOURCE[0]}")" cert-manager-controller
