#!/usr/bin/env bash
# Builds promtool from the Go module proxy once and caches it; prints the
# binary's path (see ../go-build.sh).
exec "$(dirname "${BASH_SOURCE[0]}")/../go-build.sh" "$(dirname "${BASH_SOURCE[0]}")" promtool github.com/prometheus/prometheus/cmd/promtool
