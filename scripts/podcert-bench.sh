#!/usr/bin/env bash
# certop's PodCertificateRequest signer against a backlog: N pods on NODES
# nodes, N requests created at once by the nodes themselves (each with its
# own client certificate, so kube-apiserver's Node authorizer and
# NodeRestriction check every one, as for a kubelet's), then certop started
# and timed until all N are Issued. Beside it, in the same run on the same
# control plane, the raw baseline: N status writes of the same kind
# (certificate chain, times, Issued condition, certificates signed
# beforehand) from a Rust client (kube) as certop's ServiceAccount (the same
# flow-control share of kube-apiserver) with as many writes in flight as
# certop makes at most, on N requests of a signer no CA has
# (certop.dev/raw), deleted (one deletecollection) before certop's are made.
#   N=10000 scripts/podcert-bench.sh     (make bench-podcerts; N=10000 by default)
# NODES (default 10), C (the baseline's writes in flight, default 128 =
# pod_certificate::STATUS_WRITES_IN_FLIGHT), CAP (seconds to wait for all Issued, 1800),
# STATE (the state directory).
set -euo pipefail
n="${1:-${N:-10000}}"
nodes="${NODES:-10}"
in_flight="${C:-128}"
cap="${CAP:-1800}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
state="${STATE:-$root/.certop-dev/bench-podcerts}"
# CERTOP_BIN and LOAD_BIN: binaries built already (release), instead of building.
target="${CARGO_TARGET_DIR:-$root/target}"
if [ -z "${CERTOP_BIN:-}" ] || [ -z "${LOAD_BIN:-}" ]; then
  cargo build --quiet --release --bin certop --example pod_certificate_load
fi
# Copies: a build of another worktree into the same target dir cannot swap them mid-run.
mkdir -p "$state"
cp "${CERTOP_BIN:-$target/release/certop}" "$state/certop.bin"
cp "${LOAD_BIN:-$target/release/examples/pod_certificate_load}" "$state/load.bin"
certop="$state/certop.bin"
load="$state/load.bin"
. scripts/lib/dev-cluster.sh
cleanup() {
  operator_stop
  [ -n "${waiter:-}" ] && kill "$waiter" 2>/dev/null || true
  dev_cluster_down "$state/cp"
}
trap cleanup EXIT
now() { date +%s.%N; }
scrape() { kubectl get --raw /metrics | grep '^apiserver_request_total{' | grep -v 'version=""' >"$1"; }
total() { awk '{s += $NF} END {printf "%d", s}' "$1"; }
peak_mib() { awk '/VmHWM/ {printf "%.0f", $2/1024}' "/proc/$1/status"; }
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.1f", ($14 + $15) / hz}' "/proc/$1/stat"; }

# The nodes' client certificates come from a CA kube-apiserver trusts for
# client certificates; Node + RBAC authorize, NodeRestriction admits.
rm -rf "$state/nodes-ca" "$state/nodes" && mkdir -p "$state/nodes"
"$certop" pki ca create --name "bench nodes CA" --out "$state/nodes-ca" >/dev/null
cat >"$state/authorization-config.yaml" <<'YAML'
apiVersion: apiserver.config.k8s.io/v1
kind: AuthorizationConfiguration
authorizers:
- type: Node
  name: node
- type: RBAC
  name: rbac
YAML
PODCERTS=1 APISERVER_ARGS="--client-ca-file=$state/nodes-ca/ca.crt --authorization-config=$state/authorization-config.yaml --enable-admission-plugins=NodeRestriction" \
  dev_cluster_up "$state/cp" bench
server="$(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}')"
ca_data="$(kubectl config view --raw --minify -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')"
for i in $(seq 0 $((nodes - 1))); do
  node="bench-node-$i"
  printf 'apiVersion: certop.dev/v1\nkind: ClusterCertificate\nmetadata: {name: %s}\nspec:\n  issuerRef: {name: nodes}\n  secretName: %s\n  secretNamespace: default\n  profile: client\n  commonName: "system:node:%s"\n  organizations: ["system:nodes"]\n' \
    "$node" "$node" "$node" >"$state/nodes/$node.yaml"
  "$certop" pki issue --ca "$state/nodes-ca" -f "$state/nodes/$node.yaml" --out "$state/nodes/$node" >/dev/null
  cat >"$state/nodes/node-$i.kubeconfig" <<YAML
apiVersion: v1
kind: Config
clusters:
- name: bench
  cluster: {server: "$server", certificate-authority-data: "$ca_data"}
users:
- name: $node
  user:
    client-certificate-data: "$(base64 -w0 "$state/nodes/$node/tls.crt")"
    client-key-data: "$(base64 -w0 "$state/nodes/$node/tls.key")"
contexts:
- name: bench
  context: {cluster: bench, user: $node}
current-context: bench
YAML
done

# The CA for pods, made Ready by certop, which then stops.
operator_start "$state/cp" "${CERTOP_HTTP_PORT:-18093}" "$state/certop.log"
kubectl apply -f - >/dev/null <<'YAML'
apiVersion: certop.dev/v1
kind: CertificateAuthority
metadata: {name: bench}
spec:
  subject: {commonName: bench pods CA}
  keyAlgorithm: ECDSA-P256
  podCertificates: {}
YAML
kubectl wait --for=condition=Ready certificateauthority/bench --timeout=120s >/dev/null
operator_stop

start=$(now)
"$load" pods "$n" "$nodes"
echo "N=$n: $nodes nodes and $n pods created in $(printf '%.1f' "$(echo "$(now) - $start" | bc)") s"

# The raw baseline: N requests of another signer, one status write each.
"$load" requests "$n" "$nodes" "$state/nodes" certop.dev/raw raw
read -r raw_n raw_s raw_line < <(KUBECONFIG="$state/cp/operator.kubeconfig" "$load" raw certop.dev/raw "$in_flight")
echo "N=$n baseline: $raw_line"
[ "$raw_n" = "$n" ] || { echo "the baseline wrote $raw_n statuses, not $n" >&2; exit 1; }
kubectl delete --raw "/apis/certificates.k8s.io/v1beta1/namespaces/bench/podcertificaterequests" >/dev/null

# certop's: N requests made while it is stopped, then certop started.
start=$(now)
"$load" requests "$n" "$nodes" "$state/nodes" certop.dev/bench c
echo "N=$n: $n requests created by their nodes in $(printf '%.1f' "$(echo "$(now) - $start" | bc)") s"
scrape "$state/before"
cp_cpu=$(cpu_s "$(cat "$state/cp/control-plane.pid")")
"$load" wait "$n" certop.dev/bench >"$state/wait.out" &
waiter=$!
for _ in $(seq 1 600); do grep -q watching "$state/wait.out" && break; sleep 0.1; done
start=$(now)
operator_start "$state/cp" "${CERTOP_HTTP_PORT:-18093}" "$state/certop.log"
for _ in $(seq 1 "$((cap * 10))"); do kill -0 "$waiter" 2>/dev/null || break; sleep 0.1; done
done_at=$(tail -n 1 "$state/wait.out")
if [ "$done_at" = watching ]; then
  echo "not all $n Issued after ${cap}s; see $state/certop.log" >&2
  exit 1
fi
waiter=""
issue_s=$(echo "$done_at - $start" | bc)
operator_cpu=$(cpu_s "$operator_pid")
cp_cpu=$(echo "$(cpu_s "$(cat "$state/cp/control-plane.pid")") - $cp_cpu" | bc)
scrape "$state/after"
peak=$(peak_mib "$operator_pid")
operator_stop
requests=$(($(total "$state/after") - $(total "$state/before")))
rate=$(echo "$n / $issue_s" | bc -l)
raw_rate=$(echo "$raw_n / $raw_s" | bc -l)
printf 'N=%d certop: all %d Issued %.1f s after its start (%.0f/s); peak memory %s MiB; %d API requests (%.2f per request); CPU: certop %s s, kube-apiserver + etcd %s s\n' \
  "$n" "$n" "$issue_s" "$rate" "$peak" "$requests" "$(echo "$requests / $n" | bc -l)" "$operator_cpu" "$cp_cpu"
echo "  API requests by verb and resource (the watch that times it: 1 LIST, 1 WATCH):"
"$root/scripts/request-profile.py" "$state/before" "$state/after" "$n"
printf 'ratios: certop / raw baseline %.2f (target >= 0.5); certop / 4.5/s %.0fx (target >= 20x)\n' \
  "$(echo "$rate / $raw_rate" | bc -l)" "$(echo "$rate / 4.5" | bc -l)"
