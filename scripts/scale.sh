#!/usr/bin/env bash
# Scripted scale run: N ClusterCertificates applied at once against a real
# control plane and the operator (as its ServiceAccount), timed until all are
# Ready; the raw baseline is applying N kubernetes.io/tls Secrets of
# pre-generated certificates (the API writes alone). Prints both and the ratio.
#   scripts/scale.sh [N]
set -euo pipefail
n="${1:-500}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
state="$root/.certop-dev/scale"
cargo build --quiet --release --bin certop
certop="$root/target/release/certop"
operator_pid=""
cleanup() {
  [ -n "$operator_pid" ] && kill "$operator_pid" 2>/dev/null && wait "$operator_pid" 2>/dev/null
  scripts/dev-control-plane.sh down "$state" >/dev/null 2>&1 || true
}
trap cleanup EXIT
scripts/dev-control-plane.sh down "$state" >/dev/null 2>&1 || true
scripts/dev-control-plane.sh up "$state" >/dev/null
export KUBECONFIG="$state/kubeconfig"
kubectl apply -f manifests/namespace.yaml -f manifests/rbac.yaml >/dev/null
kubectl create namespace scale >/dev/null
kubectl create namespace baseline >/dev/null
tmp="$(mktemp -d)"

# Baseline: N TLS Secrets of real certificates, applied in one kubectl call.
"$certop" pki ca create --name baseline --out "$tmp/ca" >/dev/null
printf 'apiVersion: certop.dev/v1alpha1\nkind: ClusterCertificate\nmetadata: {name: b}\nspec:\n  issuerRef: {name: b}\n  secretName: b\n  secretNamespace: baseline\n  commonName: b.example\n' >"$tmp/b.yaml"
"$certop" pki issue --ca "$tmp/ca" -f "$tmp/b.yaml" --out "$tmp/b" >/dev/null
crt="$(base64 -w0 <"$tmp/b/tls.crt")"; key="$(base64 -w0 <"$tmp/b/tls.key")"
for i in $(seq 1 "$n"); do
  printf -- '---\napiVersion: v1\nkind: Secret\ntype: kubernetes.io/tls\nmetadata: {name: s%d, namespace: baseline}\ndata: {tls.crt: %s, tls.key: %s}\n' "$i" "$crt" "$key"
done >"$tmp/secrets.yaml"
start=$(date +%s.%N)
kubectl apply -f "$tmp/secrets.yaml" >/dev/null
baseline=$(echo "$(date +%s.%N) - $start" | bc)

# certop: a CA, then N ClusterCertificates, timed until every one is Ready.
KUBECONFIG="$state/operator.kubeconfig" "$certop" run --http-addr 127.0.0.1:18090 >"$state/operator.log" 2>&1 &
operator_pid=$!
printf 'apiVersion: certop.dev/v1alpha1\nkind: CertificateAuthority\nmetadata: {name: scale}\nspec:\n  subject: {commonName: scale}\n' | kubectl apply -f - >/dev/null
kubectl wait --for=condition=Ready certificateauthority/scale --timeout=60s >/dev/null
for i in $(seq 1 "$n"); do
  printf -- '---\napiVersion: certop.dev/v1alpha1\nkind: ClusterCertificate\nmetadata: {name: c%d}\nspec:\n  issuerRef: {name: scale}\n  secretName: c%d\n  secretNamespace: scale\n  commonName: c%d.example\n' "$i" "$i" "$i"
done >"$tmp/certs.yaml"
start=$(date +%s.%N)
kubectl apply -f "$tmp/certs.yaml" >/dev/null
applied=$(echo "$(date +%s.%N) - $start" | bc)
until [ "$(kubectl get clustercertificates -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c True)" -ge "$n" ]; do
  sleep 0.5
done
ours=$(echo "$(date +%s.%N) - $start" | bc)
rss=$(ps -o rss= -p "$operator_pid" | awk '{printf "%.0f", $1/1024}')
secrets=$(kubectl get secrets -n scale -o name | wc -l)
rm -rf "$tmp"
printf 'certificates: %d (Secrets written: %d)\n' "$n" "$secrets"
printf 'baseline, kubectl apply of %d TLS Secrets: %.1f s\n' "$n" "$baseline"
printf 'certop, apply of %d ClusterCertificates (kubectl alone: %.1f s) until all Ready: %.1f s\n' "$n" "$applied" "$ours"
printf 'ratio certop/baseline: %.2f\n' "$(echo "$ours / $baseline" | bc -l)"
printf 'operator resident memory after: %s MiB\n' "$rss"
