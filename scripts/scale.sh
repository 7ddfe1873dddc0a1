#!/usr/bin/env bash
# Scripted scale run: N ClusterCertificates applied at once against a real
# control plane and the operator (as its ServiceAccount), timed until all are
# Ready; the raw baseline is applying N kubernetes.io/tls Secrets of
# pre-generated certificates (the API writes alone). Prints both and the ratio.
#   scripts/scale.sh [N]
# With BACKLOG=1 the N ClusterCertificates are created while the operator
# is stopped, and the time is from its start until all are Ready (what an
# operator meets after an outage or a mass apply): that measures certop,
# not kubectl. It also reports peak memory, the API requests it made (from
# the API server's metrics) and its conflicts.
set -euo pipefail
n="${1:-500}"
backlog="${BACKLOG:-0}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
state="$root/.certop-dev/scale"
cargo build --quiet --release --bin certop
certop="$root/target/release/certop"
. scripts/lib/dev-cluster.sh
cleanup() {
  operator_stop
  dev_cluster_down "$state"
}
trap cleanup EXIT
dev_cluster_up "$state" scale scale-probe
kubectl create namespace baseline >/dev/null
tmp="$(mktemp -d)"

# Baseline: N TLS Secrets of real certificates, applied in one kubectl call.
"$certop" pki ca create --name baseline --out "$tmp/ca" >/dev/null
printf 'apiVersion: certop.dev/v1\nkind: ClusterCertificate\nmetadata: {name: b}\nspec:\n  issuerRef: {name: b}\n  secretName: b\n  secretNamespace: baseline\n  commonName: b.example\n' >"$tmp/b.yaml"
"$certop" pki issue --ca "$tmp/ca" -f "$tmp/b.yaml" --out "$tmp/b" >/dev/null
crt="$(base64 -w0 <"$tmp/b/tls.crt")"; key="$(base64 -w0 <"$tmp/b/tls.key")"
for i in $(seq 1 "$n"); do
  printf -- '---\napiVersion: v1\nkind: Secret\ntype: kubernetes.io/tls\nmetadata: {name: s%d, namespace: baseline}\ndata: {tls.crt: %s, tls.key: %s}\n' "$i" "$crt" "$key"
done >"$tmp/secrets.yaml"
start=$(date +%s.%N)
kubectl apply -f "$tmp/secrets.yaml" >/dev/null
baseline=$(echo "$(date +%s.%N) - $start" | bc)

# certop: a CA, then N ClusterCertificates, timed until every one is Ready.
start_operator() { operator_start "$state" 18090 "$state/operator.log"; }
# Every API request the server counted, but this script's own polling
# (LISTs of ClusterCertificates) and metric scrapes.
requests() {
  kubectl get --raw /metrics | grep '^apiserver_request_total{' | tee "$state/requests.$1" |
    awk '!(/resource="clustercertificates"/ && /verb="LIST"/) && !/verb="GET",version=""/ {s += $NF} END {printf "%d", s}'
}
# The requests of the run by verb, resource and subresource, most first.
breakdown() { "$root/scripts/request-profile.py" "$state/requests.before" "$state/requests.after" "$n"; }
: >"$state/operator.log"
start_operator
printf 'apiVersion: certop.dev/v1\nkind: CertificateAuthority\nmetadata: {name: scale}\nspec:\n  subject: {commonName: scale}\n' | kubectl apply -f - >/dev/null
kubectl wait --for=condition=Ready certificateauthority/scale --timeout=60s >/dev/null
for i in $(seq 1 "$n"); do
  printf -- '---\napiVersion: certop.dev/v1\nkind: ClusterCertificate\nmetadata: {name: c%d}\nspec:\n  issuerRef: {name: scale}\n  secretName: c%d\n  secretNamespace: scale\n  commonName: c%d.example\n' "$i" "$i" "$i"
done >"$tmp/certs.yaml"
all_ready() {
  [ "$(kubectl get clustercertificates -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c True)" -ge "$n" ]
}
if [ "$backlog" = 1 ]; then
  operator_stop
  kubectl apply -f "$tmp/certs.yaml" >/dev/null
  before=$(requests before)
  start=$(date +%s.%N)
  start_operator
  until all_ready; do sleep 0.5; done
  ours=$(echo "$(date +%s.%N) - $start" | bc)
  applied=0
else
  before=$(requests before)
  start=$(date +%s.%N)
  kubectl apply -f "$tmp/certs.yaml" >/dev/null
  applied=$(echo "$(date +%s.%N) - $start" | bc)
  until all_ready; do sleep 0.5; done
  ours=$(echo "$(date +%s.%N) - $start" | bc)
fi
after=$(requests after)
if [ "$backlog" = 1 ]; then
  # A restart with all N present: time until a certificate created after
  # it is Ready (the queue worked through), and how many were re-issued
  # (Secrets whose resourceVersion changed).
  kubectl get secrets -n scale -o jsonpath='{range .items[*]}{.metadata.name}={.metadata.resourceVersion}{"\n"}{end}' | sort >"$state/versions.before"
  operator_stop
  restart_start=$(date +%s.%N)
  start_operator
  printf 'apiVersion: certop.dev/v1\nkind: ClusterCertificate\nmetadata: {name: probe}\nspec:\n  issuerRef: {name: scale}\n  secretName: probe\n  secretNamespace: scale-probe\n  commonName: probe.example\n' >"$tmp/probe.yaml"
  kubectl apply -f "$tmp/probe.yaml" >/dev/null
  kubectl wait --for=condition=Ready clustercertificate/probe --timeout=600s >/dev/null
  restart_s=$(echo "$(date +%s.%N) - $restart_start" | bc)
  kubectl get secrets -n scale -o jsonpath='{range .items[*]}{.metadata.name}={.metadata.resourceVersion}{"\n"}{end}' | sort >"$state/versions.after"
  reissued=$(comm -13 "$state/versions.before" "$state/versions.after" | wc -l)
fi
rss=$(ps -o rss= -p "$operator_pid" | awk '{printf "%.0f", $1/1024}')
peak=$(awk '/VmHWM/ {printf "%.0f", $2/1024}' "/proc/$operator_pid/status")
conflicts=$(grep -c "409\|Conflict" "$state/operator.log" || true)
secrets=$(kubectl get secrets -n scale -o name | wc -l)
rm -rf "$tmp"
printf 'certificates: %d (Secrets written: %d)\n' "$n" "$secrets"
printf 'baseline, kubectl apply of %d TLS Secrets: %.1f s\n' "$n" "$baseline"
if [ "$backlog" = 1 ]; then
  printf 'certop, %d ClusterCertificates created before it started, from its start until all Ready: %.1f s (%.0f/s)\n' "$n" "$ours" "$(echo "$n / $ours" | bc -l)"
else
  printf 'certop, apply of %d ClusterCertificates (kubectl alone: %.1f s) until all Ready: %.1f s\n' "$n" "$applied" "$ours"
fi
printf 'ratio certop/baseline: %.2f\n' "$(echo "$ours / $baseline" | bc -l)"
printf 'operator memory: %s MiB resident after, %s MiB peak (%.1f KiB per certificate at peak)\n' "$rss" "$peak" "$(echo "$peak * 1024 / $n" | bc -l)"
printf 'API requests by certop during the run: %d (%.1f per certificate); conflict lines in its log: %d\n' "$((after - before))" "$(echo "($after - $before) / $n" | bc -l)" "$conflicts"
breakdown
if [ "$backlog" = 1 ]; then
  printf 'restart with %d present: a certificate created after the restart Ready %.1f s after it; Secrets re-issued or rewritten by the restart: %d\n' "$n" "$restart_s" "$reissued"
fi
