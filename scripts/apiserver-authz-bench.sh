#!/usr/bin/env bash
# What certop's authorization webhook costs kube-apiserver: N GETs made with
# a client certificate (C in flight, default 10), first with Node + RBAC
# only, then, on the same API server (it reloads its
# --authorization-config), with the configuration `certop authz-config`
# writes: certop's webhook first; ROUNDS times (default 1), alternating.
# certop (release build, as its ServiceAccount) holds REVOKED revoked
# digests (default 100,000, made as benches/authz.rs makes them, in
# CertificateRevocations of 1000). Each phase is warmed up with 500 GETs;
# its latencies are read from the API server's own histograms between two
# scrapes of /metrics (scripts/histogram-quantile.py) and from the loader's
# clock (examples/x509_gets.rs).
#   scripts/apiserver-authz-bench.sh [N]      (default 10000)
set -euo pipefail
n="${1:-10000}"
concurrency="${C:-10}"
revoked="${REVOKED:-100000}"
rounds="${ROUNDS:-1}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
cargo build --quiet --release --bin certop --example x509_gets
target="${CARGO_TARGET_DIR:-$root/target}"
certop="$target/release/certop"
gets="$target/release/examples/x509_gets"
state="${STATE:-$root/.certop-dev/apiserver-authz}"
quantiles() { python3 "$root/scripts/histogram-quantile.py" "$@"; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
. scripts/lib/dev-cluster.sh
cleanup() {
  operator_stop
  dev_cluster_down "$state/cp"
}
trap cleanup EXIT
cleanup
rm -rf "$state"
mkdir -p "$state"

# The client CA is made offline and given to kube-apiserver at its start;
# certop adopts it. Node + RBAC until certop's webhook is configured.
"$certop" pki ca create --name "apiserver bench CA" --out "$state/ca" >/dev/null
authz="$state/authorization-config.yaml"
cat >"$state/without-webhook.yaml" <<'YAML'
apiVersion: apiserver.config.k8s.io/v1
kind: AuthorizationConfiguration
authorizers:
- type: Node
  name: node
- type: RBAC
  name: rbac
YAML
cp "$state/without-webhook.yaml" "$authz"
APISERVER_ARGS="--client-ca-file=$state/ca/ca.crt --authorization-config=$authz" dev_cluster_up "$state/cp"
kubectl create secret generic -n certop-system bench-ca \
  --from-file=ca.crt="$state/ca/ca.crt" --from-file=ca.key="$state/ca/ca.key" >/dev/null
kubectl apply -f - >/dev/null <<'YAML'
apiVersion: certop.dev/v1
kind: CertificateAuthority
metadata:
  name: bench
spec:
  subject: {commonName: apiserver bench CA}
  keySource: {secretName: bench-ca, adopt: true}
YAML
authz_port="$(free_port)"
http_port="$(free_port)"
operator_start "$state/cp" "$http_port" "$state/operator.log" \
  --authz-addr "127.0.0.1:$authz_port" --authz-ca bench

# REVOKED digests, as benches/authz.rs makes them: i as 64 hex digits.
python3 - "$revoked" >"$state/revocations.json" <<'PY'
import json, sys
n = int(sys.argv[1])
items = [{"apiVersion": "certop.dev/v1", "kind": "CertificateRevocation",
          "metadata": {"name": f"bench-{start // 1000:03d}"},
          "spec": {"issuerRef": {"name": "bench"}, "reason": "keyCompromise",
                   "certificateSHA256s": [f"{i:064x}" for i in range(start, min(start + 1000, n))]}}
         for start in range(0, n, 1000)]
json.dump({"apiVersion": "v1", "kind": "List", "items": items}, sys.stdout)
PY
kubectl create -f "$state/revocations.json" >/dev/null
operator_metric() { curl -fs "127.0.0.1:$http_port/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
for _ in $(seq 1 300); do
  [ "$(operator_metric certop_authz_revoked_credentials)" = "$revoked" ] && break
  sleep 1
done
[ "$(operator_metric certop_authz_revoked_credentials)" = "$revoked" ] ||
  { echo "certop's index never held $revoked digests; see $state/operator.log" >&2; exit 1; }

# The client: a certificate of the CA, in a group that may get namespaces.
cat >"$state/client.yaml" <<'YAML'
apiVersion: certop.dev/v1
kind: ClusterCertificate
metadata:
  name: bench-reader
spec:
  issuerRef: {name: bench}
  secretName: bench-reader
  secretNamespace: default
  profile: client
  commonName: bench-reader
  organizations: [bench-readers]
YAML
"$certop" pki issue --ca "$state/ca" -f "$state/client.yaml" --out "$state/client" >/dev/null
kubectl create clusterrole bench-get-namespaces --verb=get --resource=namespaces >/dev/null
kubectl create clusterrolebinding bench-get-namespaces --clusterrole=bench-get-namespaces \
  --group=bench-readers >/dev/null
server="$(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}')"
ca_data="$(kubectl config view --raw --minify -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')"
cat >"$state/client.kubeconfig" <<YAML
apiVersion: v1
kind: Config
clusters:
- name: bench
  cluster: {server: "$server", certificate-authority-data: "$ca_data"}
users:
- name: bench-reader
  user:
    client-certificate-data: "$(base64 -w0 "$state/client/tls.crt")"
    client-key-data: "$(base64 -w0 "$state/client/tls.key")"
contexts:
- name: bench
  context: {cluster: bench, user: bench-reader}
current-context: bench
YAML
path=/api/v1/namespaces/default
load() { KUBECONFIG="$state/client.kubeconfig" "$gets" "$1" "$concurrency" "$path"; }
scrape() { kubectl get --raw /metrics >"$1"; }
# CPU seconds a process (and its reaped children) used so far.
cpu() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$1/stat"; }
control_plane_pid="$(cat "$state/cp/control-plane.pid")"
webhook_reviews() {
  kubectl get --raw /metrics | awk '/^apiserver_authorization_webhook_evaluations_total\{/ && /name="certop.dev"/ {s += $NF} END {printf "%d", s}'
}

# One phase: warm, scrape, N GETs, scrape. Prints the client's view, the
# CPU each process used and the API server's histograms; keeps the request
# latency line in $state/NAME.request for the ratio.
phase() {
  local name="$1" cp_cpu certop_cpu
  load 500 >/dev/null
  scrape "$state/$name.before"
  cp_cpu="$(cpu "$control_plane_pid")"
  certop_cpu="$(cpu "$operator_pid")"
  echo "$name:"
  load "$n" | tee "$state/$name.client" | sed 's/^/  /'
  echo "  CPU: kube-apiserver + etcd $(echo "$(cpu "$control_plane_pid") - $cp_cpu" | bc) s, certop $(echo "$(cpu "$operator_pid") - $certop_cpu" | bc) s"
  scrape "$state/$name.after"
  quantiles "$state/$name.before" "$state/$name.after" apiserver_request_duration_seconds \
    verb=GET resource=namespaces >"$state/$name.request"
  echo "  apiserver_request_duration_seconds (GET namespaces): $(cat "$state/$name.request")"
  echo "  apiserver_request_filter_duration_seconds (authorization, all requests): $(quantiles "$state/$name.before" "$state/$name.after" apiserver_request_filter_duration_seconds filter=authorization)"
}
# The ratio with / without in round $3 of a "pXX V ms" figure ($1) in the
# phases' files of kind $2 (request: the API server's; client: the loader's).
ratio() {
  local without with
  without="$(grep -o "$1 [0-9.]*" "$state/without-webhook-$3.$2" | cut -d' ' -f2)"
  with="$(grep -o "$1 [0-9.]*" "$state/with-webhook-$3.$2" | cut -d' ' -f2)"
  echo "scale=2; $with / $without" | bc
}
# Installs an authorization configuration and waits until kube-apiserver
# uses it: until GETs reach certop's webhook (on) or no longer do (off).
configure() {
  local file="$1" want="$2" before
  cp "$file" "$authz"
  for _ in $(seq 1 120); do
    before="$(webhook_reviews)"
    load 20 >/dev/null
    if [ "$want" = on ] && [ "$(webhook_reviews)" -gt "$before" ]; then return 0; fi
    if [ "$want" = off ] && [ "$(webhook_reviews)" -eq "$before" ]; then return 0; fi
    sleep 1
  done
  echo "kube-apiserver did not take $file" >&2
  exit 1
}

"$certop" authz-config --ca bench --server "https://127.0.0.1:$authz_port" --out "$state/authz" >/dev/null
for round in $(seq 1 "$rounds"); do
  configure "$state/without-webhook.yaml" off
  phase "without-webhook-$round"
  configure "$state/authz/authorization-config.yaml" on
  reviews_before="$(webhook_reviews)"
  phase "with-webhook-$round"
  echo "  apiserver_authorization_webhook_duration_seconds (certop.dev): $(quantiles "$state/with-webhook-$round.before" "$state/with-webhook-$round.after" apiserver_authorization_webhook_duration_seconds name=certop.dev)"
  echo "  reviews sent to certop in the phase and its warm-up: $(($(webhook_reviews) - reviews_before)); certop's index: $(operator_metric certop_authz_revoked_credentials) revoked digests"
  echo "round $round, with / without: API server p50 $(ratio p50 request "$round"), p99 $(ratio p99 request "$round"); client p50 $(ratio p50 client "$round"), p99 $(ratio p99 client "$round")"
done
