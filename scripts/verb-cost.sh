#!/usr/bin/env bash
# The API server's CPU per request, by verb, for the writes certop makes
# (issue 24: choose the cheapest verb per write). On a fresh control plane,
# certop writes two real Secrets and a Ready ClusterCertificate (the
# templates, so the objects are shaped exactly like certop's); then, with
# certop stopped, examples/verb_cost makes N requests of each verb, 16 in
# flight, as the cluster admin, and reports the CPU the control plane
# process (kube-apiserver and its embedded etcd) used meanwhile. Each verb
# runs twice, the second round in the reverse order: the spread is the noise.
#   scripts/verb-cost.sh [N]        (N default 2000)
# The table: CPU ms per request net of the process's idle rate (measured
# for IDLE seconds, default 10, before the rounds), and its ratio to a
# Secret create in the same round.
# PPROF=1 also records kube-apiserver's CPU profile over the first
# PPROF_SECONDS (default 10) of each verb's first round (STATE/pprof/VERB.pprof;
# read with `go tool pprof -top -cum BINARY FILE`, BINARY from
# tests/control-plane/build.sh). The profiler costs CPU of its own and the
# rounds wait for it: the table of a PPROF=1 run is not comparable.
set -euo pipefail
n="${1:-2000}"
idle_s="${IDLE:-10}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
state="${STATE:-$root/.certop-dev/verb-cost}"
mkdir -p "$state"
cargo build --quiet --release --bin certop --example verb_cost
# Copies of what was just built: a build of another checkout that shares
# the target directory cannot swap them under the run.
target="${CARGO_TARGET_DIR:-$root/target}"
cp "$target/release/certop" "$state/certop.bin"
cp "$target/release/examples/verb_cost" "$state/verb_cost.bin"
certop="$state/certop.bin"
verb_cost="$state/verb_cost.bin"
. scripts/lib/dev-cluster.sh
cleanup() {
  operator_stop
  dev_cluster_down "$state/cp"
}
trap cleanup EXIT

pprof="${PPROF:-0}"
if [ "$pprof" = 1 ]; then export APISERVER_ARGS="${APISERVER_ARGS:-} --profiling=true"; fi
dev_cluster_up "$state/cp" bench
pid="$(cat "$state/cp/control-plane.pid")"
children="$(pgrep -P "$pid" | tr '\n' ' ' || true)"
[ -z "$children" ] || echo "warning: the control plane has child processes ($children), not counted" >&2

# The templates: what certop itself writes.
templates="$state/templates"
rm -rf "$templates" && mkdir -p "$templates"
operator_start "$state/cp" "${CERTOP_HTTP_PORT:-18092}" "$state/certop.log"
printf '{"apiVersion":"certop.dev/v1","kind":"CertificateAuthority","metadata":{"name":"verb-cost"},"spec":{"subject":{"commonName":"verb-cost"},"keyAlgorithm":"ECDSA-P256"}}\n' | kubectl apply -f - >/dev/null
kubectl wait --for=condition=Ready certificateauthority/verb-cost --timeout=120s >/dev/null
for t in a b; do
  printf '{"apiVersion":"certop.dev/v1","kind":"ClusterCertificate","metadata":{"name":"template-%s"},"spec":{"issuerRef":{"name":"verb-cost"},"secretName":"template-%s","secretNamespace":"bench","dnsNames":["template-%s.bench.svc"],"duration":"2160h","privateKey":{"algorithm":"ECDSA-P256"}}}\n' "$t" "$t" "$t"
done | kubectl apply -f - >/dev/null
kubectl wait --for=condition=Ready clustercertificate/template-a clustercertificate/template-b --timeout=120s >/dev/null
operator_stop
kubectl get secret -n bench template-a -o json >"$templates/secret-a.json"
kubectl get secret -n bench template-b -o json >"$templates/secret-b.json"
kubectl get clustercertificate template-a -o json >"$templates/certificate.json"

"$verb_cost" setup-secrets "$n" 0 "$templates" >/dev/null
"$verb_cost" setup-certificates "$n" 0 "$templates" >/dev/null

ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
hz="$(getconf CLK_TCK)"
sleep 5
before=$(ticks)
sleep "$idle_s"
idle_ticks=$(($(ticks) - before))

verbs=(secret-create secret-apply-create secret-get secret-update secret-merge secret-apply status-apply status-merge status-replace)
results="$state/results.txt"
: >"$results"
for round in 1 2; do
  order=("${verbs[@]}")
  if [ "$round" = 2 ]; then
    order=()
    for ((i = ${#verbs[@]} - 1; i >= 0; i--)); do order+=("${verbs[$i]}"); done
  fi
  for verb in "${order[@]}"; do
    sleep 2
    profiler=""
    if [ "$pprof" = 1 ] && [ "$round" = 1 ]; then
      mkdir -p "$state/pprof"
      # A fixed window from the verb's start (the server sends the profile
      # only at its end): idle if the verb ends first, which adds little.
      kubectl get --raw "/debug/pprof/profile?seconds=${PPROF_SECONDS:-10}" >"$state/pprof/$verb.pprof" &
      profiler=$!
    fi
    line=$(VERB_COST_PID="$pid" "$verb_cost" "$verb" "$n" "$round" "$templates")
    if [ -n "$profiler" ]; then wait "$profiler"; fi
    echo "round=$round $line" | tee -a "$results"
  done
done

python3 - "$results" "$hz" "$idle_ticks" "$idle_s" "$n" "${verbs[@]}" <<'PY'
import sys
path, hz, idle_ticks, idle_s, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
verbs = sys.argv[6:]
idle_rate = idle_ticks / hz / idle_s  # CPU seconds per second
runs = {}
for line in open(path):
    f = dict(kv.split("=", 1) for kv in line.split())
    cpu = int(f["cpu_ticks"]) / hz
    wall = float(f["wall_s"])
    requests = int(f["requests"])
    net_ms = max(cpu - idle_rate * wall, 0) * 1000 / requests
    runs[(f["verb"], f["round"])] = (requests, wall, net_ms)
print()
print(f"N={n}, 16 in flight; control plane idle: {idle_rate * 1000:.0f} ms CPU/s (subtracted)")
print(f"{'verb':20} {'requests':>8} {'wall s (1, 2)':>14} {'API CPU ms/request (1, 2)':>26} {'/ Secret create (1, 2)':>23}")
for verb in verbs:
    cells = [runs.get((verb, r)) for r in ("1", "2")]
    if not all(cells):
        continue
    base = [runs.get(("secret-create", r)) for r in ("1", "2")]
    walls = ", ".join(f"{c[1]:.1f}" for c in cells)
    cpus = ", ".join(f"{c[2]:.2f}" for c in cells)
    ratios = ", ".join(f"{c[2] / b[2]:.2f}" if b and b[2] else "-" for c, b in zip(cells, base))
    print(f"{verb:20} {cells[0][0]:>8} {walls:>14} {cpus:>26} {ratios:>23}")
PY
