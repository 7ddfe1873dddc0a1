//go:build tools

// helm v3, built from the Go module proxy like the test control plane
// (`go-build.sh DIR helm helm.sh/helm/v3/cmd/helm`), to lint and render
// charts/certop in the tests (tests/helm_chart.rs). This file only pins the
// module's dependencies; it is never compiled.
package tools

import _ "helm.sh/helm/v3/cmd/helm"
