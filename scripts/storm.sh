#!/usr/bin/env bash
# A renewal storm: N certificates (6-minute lifetime, renewed 3 minutes
# before expiry) issued together, so that their renewals all fall due in
# the same few minutes, with the operator's API rate bounded by
# --kube-api-qps/--kube-api-burst. Checks that every one is renewed before
# its first certificate expires, shows how the jitter spreads the renewals,
# and reads the request rate the API server saw (apiserver_request_total,
# sampled every second) against the bound.
#   QPS=200 BURST=400 scripts/storm.sh [N]     (the defaults; N 2000)
set -euo pipefail
n="${1:-2000}"
qps="${QPS:-200}"
burst="${BURST:-400}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
state="$root/.certop-dev/storm"
cargo build --quiet --release --bin certop --example bulk_create
# Copies of what was just built (a build of another checkout that shares
# the target directory cannot swap them under the run).
mkdir -p "$root/.certop-dev"
cp "${CARGO_TARGET_DIR:-$root/target}/release/certop" "$root/.certop-dev/storm-certop.bin"
cp "${CARGO_TARGET_DIR:-$root/target}/release/examples/bulk_create" "$root/.certop-dev/storm-bulk_create.bin"
certop="$root/.certop-dev/storm-certop.bin"
. scripts/lib/dev-cluster.sh
sampler_pid=""
cleanup() {
  [ -n "$sampler_pid" ] && kill "$sampler_pid" 2>/dev/null
  operator_stop
  dev_cluster_down "$state"
}
trap cleanup EXIT
dev_cluster_up "$state" storm
operator_start "$state" 18092 "$state/operator.log" --kube-api-qps "$qps" --kube-api-burst "$burst"
printf '{"apiVersion":"certop.dev/v1","kind":"CertificateAuthority","metadata":{"name":"storm"},"spec":{"subject":{"commonName":"storm"}}}\n' | kubectl apply -f - >/dev/null
kubectl wait --for=condition=Ready certificateauthority/storm --timeout=120s >/dev/null

# Every API request the server counted so far (discovery and metric scrapes,
# which have no API version, left out), once a second, with the time.
(
  while :; do
    t=$(date +%s.%N)
    c=$(api_requests_total)
    echo "$t $c"
    sleep 1
  done
) >"$state/requests.tsv" &
sampler_pid=$!

for i in $(seq 1 "$n"); do
  printf '{"apiVersion":"certop.dev/v1","kind":"ClusterCertificate","metadata":{"name":"s%d"},"spec":{"issuerRef":{"name":"storm"},"secretName":"s%d","secretNamespace":"storm","dnsNames":["s%d.example"],"duration":"6m","renewBefore":"3m"}}\n' "$i" "$i" "$i"
done | "$root/.certop-dev/storm-bulk_create.bin" 16 >/dev/null
created=$(date +%s.%N)

# name revision notAfter, one line per certificate.
table() {
  kubectl get clustercertificates --chunk-size=0 -o jsonpath='{range .items[*]}{.metadata.name}{" "}{.status.revision}{" "}{.status.notAfter}{"\n"}{end}'
}
until [ "$(table | awk '$2 >= 1' | wc -l)" -ge "$n" ]; do sleep 2; done
issued=$(date +%s.%N)
table | sort >"$state/first.txt"
deadline=$(( $(date +%s) + 600 ))
until [ "$(table | awk '$2 >= 2' | wc -l)" -ge "$n" ] || [ "$(date +%s)" -gt "$deadline" ]; do sleep 5; done
renewed=$(date +%s.%N)
table | sort >"$state/second.txt"
kill "$sampler_pid"; sampler_pid=""

python3 - "$state/first.txt" "$state/second.txt" "$state/requests.tsv" "$n" "$qps" "$burst" "$created" "$issued" "$renewed" <<'PY'
import sys
from datetime import datetime, timezone
first_path, second_path, requests_path = sys.argv[1:4]
n, qps, burst = int(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6])
created, issued, renewed = map(float, sys.argv[7:10])
def ts(s):
    return datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()
first = {l.split()[0]: l.split() for l in open(first_path) if l.strip()}
second = {l.split()[0]: l.split() for l in open(second_path) if l.strip()}
lifetime = 360
late, not_renewed, twice, issued_at = [], [], [], []
for name, (_, rev1, after1) in first.items():
    row = second.get(name)
    if not row or len(row) < 3 or int(row[1] or 0) < 2:
        not_renewed.append(name)
        continue
    if int(row[1]) > 2 or int(rev1) != 1:
        twice.append(name)
    at = ts(row[2]) - lifetime  # the renewal was issued at its notAfter less the lifetime
    issued_at.append(at)
    if at >= ts(after1):
        late.append(name)
print(f"renewal storm of {n} certificates (6m lifetime, renewBefore 3m), --kube-api-qps {qps:g} --kube-api-burst {burst}")
print(f"first issuance of all: {issued - created:.1f} s after they were created")
print(f"renewed: {n - len(not_renewed)}/{n}; renewed after their first certificate expired: {len(late)}; issued more than once per window: {len(twice)}")
if issued_at:
    start = min(issued_at)
    span = max(issued_at) - start
    print(f"renewals spread over {span:.0f} s (certificate notAfter second resolution); per 15 s:")
    buckets = {}
    for at in issued_at:
        b = int((at - start) // 15)
        buckets[b] = buckets.get(b, 0) + 1
    for b in sorted(buckets):
        print(f"  {b * 15:4d}-{b * 15 + 15:<4d} s {buckets[b]:5d} {'#' * (buckets[b] * 60 // n)}")
samples = [tuple(map(float, l.split())) for l in open(requests_path) if len(l.split()) == 2]
rates = []
for (t0, c0), (t1, c1) in zip(samples, samples[1:]):
    if t1 > t0:
        rates.append(((c1 - c0) / (t1 - t0), t0))
def windows(seconds, after):
    """The request rate over every window of `seconds` starting after `after`."""
    out = []
    for i, (t0, c0) in enumerate(samples):
        if t0 < after:
            continue
        for t1, c1 in samples[i + 1:]:
            if t1 - t0 >= seconds:
                out.append((c1 - c0) / (t1 - t0))
                break
    return out
storm = [r for r, t in rates if t >= issued]
if storm:
    ten = windows(10, issued)
    print(f"API requests per second the API server counted during the renewals (all clients, the script's polls included):")
    print(f"  1 s samples: max {max(storm):.0f}, mean {sum(storm) / len(storm):.0f} (the bucket allows {burst} + {qps:g} in a second after idling)")
    if ten:
        print(f"  10 s windows: max {max(ten):.0f} (the bucket allows {(burst + qps * 10) / 10:.0f})")
PY
