#!/usr/bin/env bash
# certop and cert-manager side by side on the identical workload, each on a
# fresh control plane: N certificates (ECDSA P-256, 90 days, one DNS name,
# one CA) created while the operator is stopped, then the operator started
# and timed until all are Ready; then every certificate's renewal requested
# (cert-manager: what `cmctl renew --all` does; certop: `kubectl certop renew
# --all`), again with the operator stopped, and timed until all are renewed.
# The raw baseline is N TLS Secrets written by a Rust client with certop's
# reconcile concurrency (16 requests in flight): the API server's own limit.
#   N="1000 10000" scripts/bench-compare.sh
# RUNS picks the runs (default "certop cm-default cm-tuned"); CAP bounds
# each timed phase in seconds (default 1800): a run stopped by it reports
# how many were done and the rate so far. PROFILE=heap runs certop under
# heaptrack (its files in the state directory; `heaptrack_print -f FILE`
# reads them), built with the system's malloc (heaptrack cannot see
# jemalloc's): where its memory goes, at the cost of its timings.
set -euo pipefail
sizes="${N:-1000}"
runs="${RUNS:-certop cm-default cm-tuned}"
cap="${CAP:-1800}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
state="${STATE:-$root/.certop-dev/bench-compare}"
mkdir -p "$state"
cargo build --quiet --release --bin certop --example bulk_create --example wait_ready \
  ${PROFILE:+--no-default-features}
# Copies of what was just built: a build of another checkout that shares
# the target directory cannot swap them under the run.
target="${CARGO_TARGET_DIR:-$root/target}"
cp "$target/release/certop" "$state/certop.bin"
cp "$target/release/examples/bulk_create" "$state/bulk_create.bin"
cp "$target/release/examples/wait_ready" "$state/wait_ready.bin"
certop="$state/certop.bin"
bulk_create="$state/bulk_create.bin"
wait_ready="$state/wait_ready.bin"
cert_manager="$(tests/cert-manager/build.sh)"
helm="$(tests/helm/build.sh)"
cm_module="$(cd tests/cert-manager && go list -m -f '{{.Dir}}' github.com/cert-manager/cert-manager)"
. scripts/lib/dev-cluster.sh
cleanup() {
  operator_stop
  dev_cluster_down "$state/cp"
}
trap cleanup EXIT
fresh_control_plane() { dev_cluster_up "$state/cp" bench; }
now() { date +%s.%N; }
elapsed() { echo "$(now) - $1" | bc; }

# Every API request the server counted, by verb, resource and subresource
# (the waiter's LISTs are subtracted below; discovery and metric
# scrapes, which have no API version, are left out).
scrape() { kubectl get --raw /metrics | grep '^apiserver_request_total{' | grep -v 'version=""' >"$1"; }
request_count() {
  python3 - "$1" "$2" "$3" <<'PY'
import re, sys
def load(path):
    total = 0.0
    for line in open(path):
        total += float(line.split()[-1])
    return total
print(int(load(sys.argv[2]) - load(sys.argv[1]) - int(sys.argv[3])))
PY
}
# Where the requests went: per verb, resource and subresource, per certificate.
request_profile() { "$root/scripts/request-profile.py" "$1" "$2" "$3" --line; }

# Until COUNT objects of the kind are Ready at REVISION, or the cap:
# prints "done seconds lists", seen through one watch (examples/wait_ready:
# a LIST poll of 10,000 cost the machine about 4 CPU-seconds).
wait_for() {
  local resource="$1" want="$2" revision="$3" start="$4"
  case "$resource" in
    clustercertificates.certop.dev) set -- certop.dev/v1 ClusterCertificate clustercertificates ;;
    certificates.cert-manager.io) set -- cert-manager.io/v1 Certificate certificates ;;
    *) echo "wait_for: unknown kind $resource" >&2; return 1 ;;
  esac
  "$wait_ready" "$@" "$want" "$revision" "$start" "$cap"
}
peak_mib() { awk '/VmHWM/ {printf "%.0f", $2/1024}' "/proc/$1/status"; }
rss_mib() { awk '/VmRSS/ {printf "%.0f", $2/1024}' "/proc/$1/status"; }
# The operator's own process: under a profiler, the profiler's child.
operator_process() { pgrep -P "$operator_pid" -f "$certop" || echo "$operator_pid"; }
# CPU seconds (user + system) a process has used so far.
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.1f", ($14 + $15) / hz}' "/proc/$1/stat"; }
count() { { kubectl get "$1" -A --chunk-size=0 --no-headers 2>/dev/null || true; } | wc -l; }

start_operator() {
  case "$1" in
    certop)
      OPERATOR_WRAPPER="${PROFILE:+heaptrack -o $state/certop-heap-$(date +%s)}" \
        operator_start "$state/cp" "${CERTOP_HTTP_PORT:-18091}" "$state/$1.log" ;;
    cm-default) "$cert_manager" --kubeconfig "$state/cp/kubeconfig" >>"$state/$1.log" 2>&1 & operator_pid=$! ;;
    cm-tuned) "$cert_manager" --kubeconfig "$state/cp/kubeconfig" --kube-api-qps 100 --kube-api-burst 200 >>"$state/$1.log" 2>&1 & operator_pid=$! ;;
  esac
}

# The CA and N certificates, created with the operator stopped.
setup() {
  local run="$1" n="$2" tmp="$state/tmp"
  rm -rf "$tmp" && mkdir -p "$tmp"
  : >"$state/$run.log"
  case "$run" in
    certop)
      start_operator certop
      printf '{"apiVersion":"certop.dev/v1","kind":"CertificateAuthority","metadata":{"name":"bench"},"spec":{"subject":{"commonName":"bench"},"keyAlgorithm":"ECDSA-P256"}}\n' | kubectl apply -f - >/dev/null
      kubectl wait --for=condition=Ready certificateauthority/bench --timeout=120s >/dev/null
      operator_stop
      for i in $(seq 1 "$n"); do
        printf '{"apiVersion":"certop.dev/v1","kind":"ClusterCertificate","metadata":{"name":"c%d"},"spec":{"issuerRef":{"name":"bench"},"secretName":"c%d","secretNamespace":"bench","dnsNames":["c%d.example"],"duration":"2160h","privateKey":{"algorithm":"ECDSA-P256"}}}\n' "$i" "$i" "$i"
      done >"$tmp/objects.jsonl"
      ;;
    cm-*)
      "$helm" template cm "$cm_module/deploy/charts/cert-manager" --kube-version v1.36.3 --set crds.enabled=true \
        --show-only templates/crd-cert-manager.io_certificates.yaml --show-only templates/crd-cert-manager.io_certificaterequests.yaml \
        --show-only templates/crd-cert-manager.io_issuers.yaml --show-only templates/crd-cert-manager.io_clusterissuers.yaml \
        --show-only templates/crd-acme.cert-manager.io_orders.yaml --show-only templates/crd-acme.cert-manager.io_challenges.yaml |
        kubectl apply --server-side -f - >/dev/null
      kubectl wait --for condition=established --timeout=60s crd/certificates.cert-manager.io crd/clusterissuers.cert-manager.io >/dev/null
      "$certop" pki ca create --name bench --out "$tmp/ca" >/dev/null
      kubectl create secret tls bench-ca -n kube-system --cert "$tmp/ca/ca.crt" --key "$tmp/ca/ca.key" >/dev/null
      printf '{"apiVersion":"cert-manager.io/v1","kind":"ClusterIssuer","metadata":{"name":"bench"},"spec":{"ca":{"secretName":"bench-ca"}}}\n' | kubectl apply -f - >/dev/null
      start_operator "$run"
      kubectl wait --for=condition=Ready clusterissuer/bench --timeout=120s >/dev/null
      operator_stop
      for i in $(seq 1 "$n"); do
        printf '{"apiVersion":"cert-manager.io/v1","kind":"Certificate","metadata":{"name":"c%d","namespace":"bench"},"spec":{"issuerRef":{"name":"bench","kind":"ClusterIssuer"},"secretName":"c%d","dnsNames":["c%d.example"],"duration":"2160h","privateKey":{"algorithm":"ECDSA","size":256}}}\n' "$i" "$i" "$i"
      done >"$tmp/objects.jsonl"
      ;;
  esac
  "$bulk_create" 16 <"$tmp/objects.jsonl" >/dev/null
}

# Starts the operator and times it until all N reach REVISION; sets
# `phase` to "done seconds requests operator-cpu apiserver-cpu" and
# `phase_profile` to its requests by verb (scrapes named after LABEL).
timed_phase() {
  local run="$1" resource="$2" revision="$3" label="$4" start cp_start done seconds lists
  scrape "$state/before-$label"
  cp_start=$(cpu_s "$(cat "$state/cp/control-plane.pid")")
  start=$(now)
  start_operator "$run"
  read -r done seconds lists < <(wait_for "$resource" "$n" "$revision" "$start")
  local operator_cpu; operator_cpu=$(cpu_s "$(operator_process)")
  local cp_cpu; cp_cpu=$(echo "$(cpu_s "$(cat "$state/cp/control-plane.pid")") - $cp_start" | bc)
  scrape "$state/after-$label"
  phase="$done $seconds $(request_count "$state/before-$label" "$state/after-$label" "$lists") $operator_cpu $cp_cpu"
  phase_profile=$(request_profile "$state/before-$label" "$state/after-$label" "$n")
}

request_renewal() {
  case "$1" in
    certop) "$certop" renew --all >/dev/null ;;
    cm-*) "$cert_manager" renew-all --kubeconfig "$state/cp/kubeconfig" >/dev/null ;;
  esac
}

results="$state/results.tsv"
: >"$results"
for n in $sizes; do
  fresh_control_plane
  "$certop" pki ca create --name baseline --out "$state/baseline-ca" >/dev/null 2>&1 || true
  printf '{"apiVersion":"certop.dev/v1","kind":"ClusterCertificate","metadata":{"name":"b"},"spec":{"issuerRef":{"name":"b"},"secretName":"b","secretNamespace":"bench","dnsNames":["b.example"]}}\n' >"$state/b.json"
  rm -rf "$state/b" && "$certop" pki issue --ca "$state/baseline-ca" -f "$state/b.json" --out "$state/b" >/dev/null
  crt="$(base64 -w0 <"$state/b/tls.crt")"; key="$(base64 -w0 <"$state/b/tls.key")"
  for i in $(seq 1 "$n"); do
    printf '{"apiVersion":"v1","kind":"Secret","type":"kubernetes.io/tls","metadata":{"name":"s%d","namespace":"bench"},"data":{"tls.crt":"%s","tls.key":"%s"}}\n' "$i" "$crt" "$key"
  done >"$state/secrets.jsonl"
  start=$(now)
  "$bulk_create" 16 <"$state/secrets.jsonl" >/dev/null
  baseline=$(elapsed "$start")
  printf 'N=%d baseline: %d TLS Secrets by a Rust client, 16 in flight: %.1f s (%.0f/s)\n' "$n" "$n" "$baseline" "$(echo "$n / $baseline" | bc -l)"
  printf '%s\tbaseline\t%s\t%s\n' "$n" "$n" "$baseline" >>"$results"
  for run in $runs; do
    fresh_control_plane
    setup "$run" "$n"
    case "$run" in certop) resource=clustercertificates.certop.dev ;; *) resource=certificates.cert-manager.io ;; esac
    timed_phase "$run" "$resource" 1 issuance
    read -r ready issue_s requests operator_cpu cp_cpu <<<"$phase"
    profile="$phase_profile"
    peak=$(peak_mib "$(operator_process)"); rest=$(rss_mib "$(operator_process)")
    operator_stop
    # Renewal of all, requested with the operator stopped.
    request_renewal "$run"
    timed_phase "$run" "$resource" 2 renewal
    read -r renewed renew_s renew_requests renew_operator_cpu renew_cp_cpu <<<"$phase"
    renew_profile="$phase_profile"
    renew_peak=$(peak_mib "$(operator_process)")
    operator_stop
    objects=""
    for kind in secrets configmaps events certificaterequests.cert-manager.io; do
      c=$(count "$kind")
      if [ "$c" -gt 0 ]; then objects+="$kind=$c "; fi
    done
    printf '%s %s: %d/%d Ready in %.1f s (%.1f/s); peak %s MiB (%.1f KiB per certificate), %s MiB at rest; %d API requests (%.1f per certificate); renewal: %d/%d in %.1f s (%.1f/s), peak %s MiB; objects after: %s\n' \
      "N=$n" "$run" "$ready" "$n" "$issue_s" "$(echo "$ready / $issue_s" | bc -l)" "$peak" "$(echo "$peak * 1024 / $n" | bc -l)" "$rest" \
      "$requests" "$(echo "$requests / $n" | bc -l)" "$renewed" "$n" "$renew_s" "$(echo "$renewed / $renew_s" | bc -l)" "$renew_peak" "$objects"
    echo "$profile (the waiter's LIST and WATCH of the kind included)"
    printf '  CPU until all Ready: operator %s s, kube-apiserver + etcd %s s, of %.1f s x %d cores\n' "$operator_cpu" "$cp_cpu" "$issue_s" "$(nproc)"
    printf '  renewal: %d API requests (%.1f per certificate); %s\n' "$renew_requests" "$(echo "$renew_requests / $n" | bc -l)" "$renew_profile"
    printf '  CPU until all renewed: operator %s s, kube-apiserver + etcd %s s, of %.1f s x %d cores\n' "$renew_operator_cpu" "$renew_cp_cpu" "$renew_s" "$(nproc)"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$n" "$run" "$ready" "$issue_s" "$peak" "$requests" "$renewed" "$renew_s" "$renew_peak" "$objects" >>"$results"
  done
done

# One table and the ratios.
python3 - "$results" <<'PY'
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
by = {}
for r in rows:
    by.setdefault(r[0], {})[r[1]] = r
print()
print(f"{'N':>6} {'run':11} {'Ready':>11} {'rate/s':>8} {'peak MiB':>9} {'KiB/cert':>9} {'req/cert':>9} {'renewed':>11} {'renew/s':>8}")
for n, runs in by.items():
    N = int(n)
    b = runs.get("baseline")
    if b:
        print(f"{N:>6} {'raw writes':11} {N:>5}/{N:<5} {N / float(b[3]):>8.0f}")
    for name, r in runs.items():
        if name == "baseline":
            continue
        ready, t, peak, req, renewed, rt = int(r[2]), float(r[3]), float(r[4]), int(r[5]), int(r[6]), float(r[7])
        print(f"{N:>6} {name:11} {ready:>5}/{N:<5} {ready / t:>8.1f} {peak:>9.0f} {peak * 1024 / N:>9.1f} {req / N:>9.1f} {renewed:>5}/{N:<5} {renewed / rt:>8.1f}")
    c = runs.get("certop")
    if c:
        crate = int(c[2]) / float(c[3])
        for other in ("cm-default", "cm-tuned"):
            o = runs.get(other)
            if o and int(o[2]) > 0:
                orate = int(o[2]) / float(o[3])
                print(f"{N:>6} certop / {other}: issuance rate {crate / orate:.1f}x, renewal rate "
                      f"{(int(c[6]) / float(c[7])) / max(int(o[6]) / float(o[7]), 1e-9):.1f}x, memory per certificate "
                      f"{float(o[4]) / float(c[4]):.1f}x less")
        if b:
            print(f"{N:>6} certop time to all Ready / raw writes of N Secrets: {float(c[3]) / float(b[3]):.1f}")
PY
