# certop's entry points. `make test` is the one test command; CI runs it.
SHELL := /bin/bash
.DEFAULT_GOAL := build

CARGO ?= cargo
VENV := .venv
DEV_DIR := .certop-dev
PKILINT_VERSION := 0.13.3

.PHONY: build test kubelet-refresh lint crds manifests control-plane kubeadm kubelet helm promtool previous-release dist image fuzz venv dev-up dev-down demo bench bench-revocation bench-authz bench-apiserver-authz bench-kms bench-compare bench-podcerts scale clean

build:
	$(CARGO) build --all-targets

# Python tools the tests use as independent verifiers (pkilint), in a local venv.
venv: $(VENV)/.stamp
$(VENV)/.stamp:
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet "pkilint==$(PKILINT_VERSION)"
	touch $@

# The real control plane (kube-apiserver + etcd), built once and cached.
control-plane:
	@tests/control-plane/build.sh >/dev/null

# kubeadm v1.36.3 from the same Go modules, to compare certop's node PKI with.
kubeadm:
	@tests/kubeadm/build.sh >/dev/null

# The kubelet v1.36.3 and a fake container runtime (one binary), so the
# tests run a real kubelet against the test control plane.
kubelet:
	@tests/kubelet/build.sh >/dev/null

# helm v3 from the Go module proxy, to lint and render charts/certop.
helm:
	@tests/helm/build.sh >/dev/null

# promtool from the Go module proxy, to check and unit-test the chart's alerts.
promtool:
	@tests/promtool/build.sh >/dev/null

# certop as the previous release (tests/previous-release/commit, v0.1.0)
# built it, for the upgrade tests: built once from this repository's history
# and cached; its dependencies are this tree's (same Cargo.lock).
previous-release:
	@tests/previous-release/build.sh >/dev/null

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets --locked -- -D warnings

test: venv control-plane kubeadm kubelet helm promtool previous-release lint
	CERTOP_CONTROL_PLANE="$$(tests/control-plane/build.sh)" CERTOP_KUBEADM="$$(tests/kubeadm/build.sh)" \
		CERTOP_KUBELET="$$(tests/kubelet/build.sh)" CERTOP_HELM="$$(tests/helm/build.sh)" \
		CERTOP_PROMTOOL="$$(tests/promtool/build.sh)" \
		CERTOP_PREVIOUS_RELEASE="$$(tests/previous-release/build.sh)" \
		PKILINT_BIN="$(CURDIR)/$(VENV)/bin" \
		$(CARGO) test --locked --all-targets

# A real kubelet refreshes a pod's certificate at the beginRefreshAt certop
# set: the shortest certificate the API admits lives 1h, so this waits up
# to an hour and is not part of `make test` (which proves the
# kubelet's first write and its write after a restart).
kubelet-refresh: control-plane kubelet
	CERTOP_CONTROL_PLANE="$$(tests/control-plane/build.sh)" CERTOP_KUBELET="$$(tests/kubelet/build.sh)" \
		$(CARGO) test --locked --test integration a_real_kubelet_refreshes_the_pods_certificate_at_begin_refresh_at -- --ignored --nocapture

crds:
	$(CARGO) run --quiet -- crd > crds/certop-crds.yaml
	cp crds/certop-crds.yaml charts/certop/crds/certop-crds.yaml

# manifests/ (and the tests' all-features RBAC) rendered from charts/certop:
# one source for the chart and kustomize; a test fails when they are stale.
manifests: helm
	CERTOP_HELM="$$(tests/helm/build.sh)" scripts/manifests.sh

# KMS=1: Secrets encrypted at rest through `certop kms serve`.
# PODCERTS=1: PodCertificateRequests and ClusterTrustBundles served.
KMS ?= 0
PODCERTS ?= 0
dev-up: control-plane
	@if [ "$(KMS)" = 1 ]; then $(CARGO) build --quiet --bin certop; fi
	@KMS=$(KMS) PODCERTS=$(PODCERTS) scripts/dev-control-plane.sh up "$(DEV_DIR)"

dev-down:
	@scripts/dev-control-plane.sh down "$(DEV_DIR)"

demo: control-plane
	@scripts/demo.sh

# A release archive of the kubectl plugin, and its krew manifest:
#   make dist VERSION=v0.1.0 URL=https://example.com/kubectl-certop_linux_amd64.tar.gz
VERSION ?= v0.1.0
URL ?= https://example.invalid/kubectl-certop_linux_amd64.tar.gz
dist:
	$(CARGO) build --release --locked
	mkdir -p dist/stage
	cp target/release/certop dist/stage/kubectl-certop
	tar -C dist/stage -czf dist/kubectl-certop_linux_amd64.tar.gz kubectl-certop
	scripts/krew-manifest.sh $(VERSION) $(URL) dist/kubectl-certop_linux_amd64.tar.gz > dist/certop.yaml
	@echo "dist/kubectl-certop_linux_amd64.tar.gz and its krew manifest dist/certop.yaml"

# The image, built here without a registry: static binary, FROM scratch,
# non-root, with buildah (localhost/certop:dev). `podman run --rm
# --storage-driver vfs localhost/certop:dev --version` runs it.
image:
	@scripts/image.sh dev

# Property-based fuzzing of every parser of untrusted input
# (src/operator/testing/untrusted_input.rs); `make test` runs 256 cases per parser.
FUZZ_CASES ?= 20000
fuzz:
	CERTOP_FUZZ_CASES=$(FUZZ_CASES) $(CARGO) test --lib --locked untrusted_input -- --test-threads=2
	@echo "$(FUZZ_CASES) cases per parser, 6 parsers: $$(( $(FUZZ_CASES) * 6 )) executions"

bench:
	$(CARGO) bench --bench pki --bench kms

# The authorization webhook under 100 concurrent clients, beside a constant handler.
# How fast kube-apiserver refuses a revoked certificate, over many
# revocations in a row (N=50 by default): p50, p90, p99.
bench-revocation: control-plane
	CERTOP_CONTROL_PLANE="$$(tests/control-plane/build.sh)" CERTOP_REVOCATIONS="$${N:-50}" \
		$(CARGO) test --test integration revocation_latency -- --ignored --nocapture

bench-authz:
	$(CARGO) bench --bench authz

# What the webhook adds to kube-apiserver's latency: N GETs with a client
# certificate without it, then with it (100,000 revoked digests), read from
# the API server's own histograms: N=10000 make bench-apiserver-authz
# (ROUNDS=2 alternates without / with twice; C=10 requests in flight).
bench-apiserver-authz: control-plane
	@scripts/apiserver-authz-bench.sh $(if $(filter command line environment,$(origin N)),$(N),10000)

# Re-encryption of N Secrets after a KEK rotation: N=10000 make bench-kms
bench-kms: control-plane
	@scripts/kms-rewrite-bench.sh $(N)

# certop and cert-manager side by side (scripts/bench-compare.sh; not part
# of `make test`): N="1000 10000" make bench-compare (default both sizes).
bench-compare: control-plane helm
	@N="$(if $(filter command line environment,$(origin N)),$(N),1000 10000)" scripts/bench-compare.sh

# The PodCertificateRequest signer against a backlog of N requests made by
# their nodes, beside N raw status writes (scripts/podcert-bench.sh):
# N=500 make bench-podcerts (default 10000).
bench-podcerts: control-plane
	@scripts/podcert-bench.sh $(if $(filter command line environment,$(origin N)),$(N),10000)

# Scripted scale run against a real control plane: N=1000 make scale
# (BACKLOG=1: from a backlog, then a restart with all present; ROTATE=1: a
# CA rotation with all present; see scripts/scale.sh)
N ?= 500
scale: control-plane
	@scripts/scale.sh $(N)

clean:
	$(CARGO) clean
	rm -rf $(VENV) $(DEV_DIR)
