#!/usr/bin/env bash
# See certop work, then exit: builds everything, starts a real control plane
# (kube-apiserver + etcd), installs the CRDs, applies manifests/examples/,
# shows what kubectl shows, and stops what it started.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
state="$root/.certop-dev/demo"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "building certop"
cargo build --quiet --bin certop
certop="$root/target/debug/certop"

step "starting a control plane (kube-apiserver v1.36.3 + etcd)"
trap 'scripts/dev-control-plane.sh down "$state" >/dev/null 2>&1 || true' EXIT
scripts/dev-control-plane.sh up "$state"
export KUBECONFIG="$state/kubeconfig"
printf 'readyz: %s\n' "$(kubectl get --raw /readyz)"
kubectl get crd -l '!nothing' -o name | grep certop.dev

step "offline: certop pki issues and inspects without a cluster"
tmp="$(mktemp -d)"
"$certop" pki ca create --name "demo CA" --out "$tmp/ca"
"$certop" pki issue --ca "$tmp/ca" -f <(kubectl create --dry-run=client -o yaml -f manifests/examples/web-server.yaml) --out "$tmp/web"
"$certop" pki inspect "$tmp/web/tls.crt" | head -14
openssl verify -CAfile "$tmp/ca/ca.crt" "$tmp/web/tls.crt"
rm -rf "$tmp"

step "applying manifests/examples/"
kubectl apply -k manifests/examples/

step "kubectl get certificateauthorities,clustercertificates"
kubectl get certificateauthorities,clustercertificates

step "kubectl describe clustercertificate apiserver"
kubectl describe clustercertificate apiserver

step "done; stopping the control plane"
