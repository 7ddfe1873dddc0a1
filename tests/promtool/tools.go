//go:build tools

// promtool, built from the Go module proxy like the test control plane
// (`go-build.sh DIR promtool github.com/prometheus/prometheus/cmd/promtool`),
// to check and unit-test the chart's alerting rules against synthetic
// series (tests/alerts.rs). This file only pins the module's dependencies;
// it is never compiled.
package tools

import _ "github.com/prometheus/prometheus/cmd/promtool"
