#!/usr/bin/env bash
# Scripted scale run: N ClusterCertificates applied at once against a real
# control plane and the operator (as its ServiceAccount), timed until all are
# Ready; the raw baseline is creating N kubernetes.io/tls Secrets of
# pre-generated certificates, 16 in flight (the API writes alone). Prints
# both and the ratio.
#   scripts/scale.sh [N]
# With BACKLOG=1 the N ClusterCertificates are created while the operator
# is stopped, and the time is from its start until all are Ready (what an
# operator meets after an outage or a mass apply): that measures certop,
# not kubectl. It also reports peak memory, the API requests it made (from
# the API server's metrics) and its conflicts.
# RESTART=1 (the default with BACKLOG=1; RESTART=0 skips it): once all are
# Ready, the operator is stopped and started again with all N present, and
# timed until it has listed everything and is idle (see wait_idle), with
# the API writes it made meanwhile, its memory, then one new
# certificate's time from `kubectl apply` to Ready.
# ROTATE=1: then the CA (created with `rotation.overlap: 1m`, the least)
# is rotated with all N present, the operator run with
# `--kube-api-qps QPS --kube-api-burst BURST` (default 200 and 400), and
# timed from the request to Staged, to the switch, to every certificate
# re-issued by the new key and to the old key's retirement, with the
# request rate against the bound, each certificate's revision (exactly one
# re-issue each), every Secret checked with `openssl verify` against the
# new CA, and peak memory. ROTATE_CAP bounds the rotation (default 1800 s).
set -euo pipefail
n="${1:-500}"
backlog="${BACKLOG:-0}"
restart="${RESTART:-$backlog}"
rotate="${ROTATE:-0}"
qps="${QPS:-200}"
burst="${BURST:-400}"
rotate_cap="${ROTATE_CAP:-1800}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
state="$root/.certop-dev/scale"
cargo build --quiet --release --bin certop --example bulk_create --example wait_ready
built="${CARGO_TARGET_DIR:-$root/target}/release/certop"
. scripts/lib/dev-cluster.sh
sampler_pid=""
cleanup() {
  if [ -n "$sampler_pid" ]; then kill "$sampler_pid" 2>/dev/null || true; fi
  operator_stop
  dev_cluster_down "$state"
}
trap cleanup EXIT
dev_cluster_up "$state" scale scale-probe
# A copy of the binary: every start of the run (the restart, the rotation)
# runs the same build, whatever else is built meanwhile.
certop="$state/certop"
cp "$built" "$certop"
bulk_create="$state/bulk_create"
cp "$(dirname "$built")/examples/bulk_create" "$bulk_create"
wait_ready="$state/wait_ready"
cp "$(dirname "$built")/examples/wait_ready" "$wait_ready"
kubectl create namespace baseline >/dev/null
tmp="$(mktemp -d)"
now() { date +%s.%N; }
elapsed() { echo "$(now) - $1" | bc; }

# Baseline: N TLS Secrets of real certificates, created by a Rust client
# with 16 requests in flight (examples/bulk_create.rs, as bench-compare's;
# one kubectl apply of 10,000 objects took its client over 10 minutes).
"$certop" pki ca create --name baseline --out "$tmp/ca" >/dev/null
printf 'apiVersion: certop.dev/v1\nkind: ClusterCertificate\nmetadata: {name: b}\nspec:\n  issuerRef: {name: b}\n  secretName: b\n  secretNamespace: baseline\n  commonName: b.example\n' >"$tmp/b.yaml"
"$certop" pki issue --ca "$tmp/ca" -f "$tmp/b.yaml" --out "$tmp/b" >/dev/null
crt="$(base64 -w0 <"$tmp/b/tls.crt")"; key="$(base64 -w0 <"$tmp/b/tls.key")"
# BASELINE=0 skips it (a run of 50,000 or more, where it would only add
# N Secrets to etcd; the ratio is then not printed).
baseline=""
if [ "${BASELINE:-1}" = 1 ]; then
  for i in $(seq 1 "$n"); do
    printf '{"apiVersion":"v1","kind":"Secret","type":"kubernetes.io/tls","metadata":{"name":"s%d","namespace":"baseline"},"data":{"tls.crt":"%s","tls.key":"%s"}}\n' "$i" "$crt" "$key"
  done >"$tmp/secrets.jsonl"
  start=$(now)
  "$bulk_create" 16 <"$tmp/secrets.jsonl" >/dev/null
  baseline=$(elapsed "$start")
fi

# certop: a CA, then N ClusterCertificates, timed until every one is Ready.
start_operator() { operator_start "$state" 18090 "$state/operator.log" "$@"; }
# Every API request the server counted, but LISTs of ClusterCertificates
# (the waiter's for all Ready, this script's polls) and metric scrapes.
requests() {
  kubectl get --raw /metrics | grep '^apiserver_request_total{' | tee "$state/requests.$1" |
    awk '!(/resource="clustercertificates"/ && /verb="LIST"/) && !/verb="GET",version=""/ {s += $NF} END {printf "%d", s}'
}
# The requests between two of those scrapes by verb, resource and
# subresource, most first.
breakdown() { "$root/scripts/request-profile.py" "$state/requests.$1" "$state/requests.$2" "$n"; }
# The requests the operator's rate-limited client can have made, counted so
# far: every request the API server counted but discovery and metric
# scrapes (no API version), this script's polls (LISTs of
# ClusterCertificates and CertificateAuthorities), Leases (certop's
# leader-election client, which the rate limit leaves out on purpose, and
# kube-apiserver's own) and WATCHes (counted when a watch ends: a watch
# the operator keeps open is no work).
operator_requests() {
  kubectl get --raw /metrics | awk '/^apiserver_request_total\{/ && !/version=""/ && !/resource="leases"/ &&
    !/verb="WATCH"/ && !(/verb="LIST"/ && /resource="(clustercertificates|certificateauthorities)"/) {s += $NF} END {printf "%d", s}'
}
# Appends "time count" of operator_requests to FILE once a second, in the
# background (sampler_pid), until stop_sampler.
start_sampler() {
  ( while :; do echo "$(now) $(operator_requests)"; sleep 1; done ) >>"$1" &
  sampler_pid=$!
}
stop_sampler() { kill "$sampler_pid" 2>/dev/null || true; wait "$sampler_pid" 2>/dev/null || true; sampler_pid=""; }
# Seconds to a tenth, or what "-" stands for.
seconds() { if [ "$1" = - ]; then echo "- (not within the cap)"; else printf '%.1f' "$1"; fi; }
peak_mib() { awk '/VmHWM/ {printf "%.0f", $2/1024}' "/proc/$operator_pid/status"; }
rss_mib() { awk '/VmRSS/ {printf "%.0f", $2/1024}' "/proc/$operator_pid/status"; }
# Idle, measurably: the operator logged that its stores are listed and
# the API server then counted no request of the operator's
# (operator_requests) for 5 s in a row, sampled once a second. Prints
# "listed idle", each the seconds from START (the operator's start) to
# when its stores were listed and to the last sample that saw a request
# (idle within a second after it), or "listed -" after CAP seconds
# without 5 quiet seconds. LOG_FROM is the log's line count at the start.
wait_idle() {
  local start="$1" log_from="$2" cap="$3" listed="" last count previous="" t quiet_since
  quiet_since=$(now)
  last=$(elapsed "$start")
  while :; do
    t=$(now)
    if [ -z "$listed" ] && tail -n "+$((log_from + 1))" "$state/operator.log" | grep -q "stores ready"; then
      listed=$(echo "$t - $start" | bc)
    fi
    count=$(operator_requests)
    if [ "$count" != "$previous" ]; then
      previous="$count"; quiet_since="$t"; last=$(echo "$t - $start" | bc)
    elif [ -n "$listed" ] && [ "$(echo "$t - $quiet_since >= 5" | bc)" = 1 ]; then
      echo "$listed $last"; return
    fi
    if [ "$(echo "$t - $start > $cap" | bc)" = 1 ]; then echo "${listed:--} -"; return; fi
    sleep 1
  done
}
# The CA's signing certificate: the first of its key Secret's tls.crt.
ca_certificate() {
  kubectl get secret -n certop-system "$(kubectl get certificateauthority scale -o jsonpath='{.status.secretName}')" \
    -o jsonpath='{.data.tls\.crt}' | base64 -d | awk '{print} /END CERTIFICATE/ {exit}'
}
# name revision serial, one line per ClusterCertificate of the CA, sorted.
revisions() {
  kubectl get clustercertificates --chunk-size=0 -o jsonpath='{range .items[*]}{.metadata.name}{" "}{.status.revision}{" "}{.status.serialNumber}{"\n"}{end}' |
    grep -v '^probe ' | sort
}
: >"$state/operator.log"
overlap=""
if [ "$rotate" = 1 ]; then overlap='  rotation: {overlap: 1m}\n'; fi
start_operator
printf "apiVersion: certop.dev/v1\nkind: CertificateAuthority\nmetadata: {name: scale}\nspec:\n  subject: {commonName: scale}\n$overlap" | kubectl apply -f - >/dev/null
kubectl wait --for=condition=Ready certificateauthority/scale --timeout=60s >/dev/null
for i in $(seq 1 "$n"); do
  printf -- '---\napiVersion: certop.dev/v1\nkind: ClusterCertificate\nmetadata: {name: c%d}\nspec:\n  issuerRef: {name: scale}\n  secretName: c%d\n  secretNamespace: scale\n  commonName: c%d.example\n' "$i" "$i" "$i"
done >"$tmp/certs.yaml"
for i in $(seq 1 "$n"); do
  printf '{"apiVersion":"certop.dev/v1","kind":"ClusterCertificate","metadata":{"name":"c%d"},"spec":{"issuerRef":{"name":"scale"},"secretName":"c%d","secretNamespace":"scale","commonName":"c%d.example"}}\n' "$i" "$i" "$i"
done >"$tmp/certs.jsonl"
# Until all N are Ready, seen through one watch (examples/wait_ready; a
# LIST poll of 10,000 cost the machine about 4 CPU-seconds).
all_ready() {
  "$wait_ready" certop.dev/v1 ClusterCertificate clustercertificates "$n" 1 "$1" 86400 >/dev/null
}
if [ "$backlog" = 1 ]; then
  operator_stop
  "$bulk_create" 16 <"$tmp/certs.jsonl" >/dev/null
  before=$(requests before)
  start=$(now)
  start_operator
  all_ready "$start"
  ours=$(elapsed "$start")
  applied=0
else
  before=$(requests before)
  start=$(now)
  kubectl apply -f "$tmp/certs.yaml" >/dev/null
  applied=$(elapsed "$start")
  all_ready "$start"
  ours=$(elapsed "$start")
fi
after=$(requests after)
# The run's memory, read before any restart below.
rss=$(rss_mib)
peak=$(peak_mib)
# A conflict as kube's error says it (reason Conflict, code 409); a bare
# "409" also matched every serial number that contains those digits.
conflicts=$(grep -cE 'Conflict|code: 409' "$state/operator.log" || true)
if [ "$restart" = 1 ]; then
  # A restart with all N present: SIGTERM, start again, timed until it has
  # listed everything and is idle (wait_idle); the writes it made
  # meanwhile and its memory then; a certificate created after that, timed
  # from its apply to Ready; and how many Secrets the restart rewrote
  # (their resourceVersions).
  kubectl get secrets -n scale -o jsonpath='{range .items[*]}{.metadata.name}={.metadata.resourceVersion}{"\n"}{end}' | sort >"$state/versions.before"
  operator_stop
  requests restart.before >/dev/null
  log_from=$(wc -l <"$state/operator.log")
  restart_start=$(now)
  start_operator
  read -r restart_listed restart_idle < <(wait_idle "$restart_start" "$log_from" "${IDLE_CAP:-600}")
  requests restart.idle >/dev/null
  restart_peak=$(peak_mib); restart_rss=$(rss_mib)
  printf 'apiVersion: certop.dev/v1\nkind: ClusterCertificate\nmetadata: {name: probe}\nspec:\n  issuerRef: {name: scale}\n  secretName: probe\n  secretNamespace: scale-probe\n  commonName: probe.example\n' >"$tmp/probe.yaml"
  probe_start=$(now)
  kubectl apply -f "$tmp/probe.yaml" >/dev/null
  kubectl wait --for=condition=Ready clustercertificate/probe --timeout=600s >/dev/null
  probe_s=$(elapsed "$probe_start")
  probe_since_start=$(elapsed "$restart_start")
  kubectl get secrets -n scale -o jsonpath='{range .items[*]}{.metadata.name}={.metadata.resourceVersion}{"\n"}{end}' | sort >"$state/versions.after"
  reissued=$(comm -13 "$state/versions.before" "$state/versions.after" | wc -l)
fi
if [ "$rotate" = 1 ]; then
  # A CA rotation with all N present, the operator started with explicit
  # rate limits; its memory peak counted from the request (clear_refs 5
  # resets VmHWM).
  operator_stop
  log_from=$(wc -l <"$state/operator.log")
  rotate_operator_start=$(now)
  start_operator --kube-api-qps "$qps" --kube-api-burst "$burst"
  read -r _ rotate_settled < <(wait_idle "$rotate_operator_start" "$log_from" "${IDLE_CAP:-600}")
  revisions >"$state/revisions.before"
  ca_certificate >"$tmp/old-ca.pem"
  echo 5 >"/proc/$operator_pid/clear_refs" || echo "could not reset the operator's VmHWM: the rotation's peak includes its start" >&2
  # The requests by kind at the request and at each step (rotate.*), and
  # the operator's request count once a second from the request on; the
  # first sample is taken before the request, so the rotate-ca command's
  # own GET and PATCH of the CA are subtracted from the later ones.
  requests rotate.requested >/dev/null
  rotate_start=$(now)
  echo "$rotate_start $(operator_requests)" >"$state/rotation-requests.tsv"
  "$certop" rotate-ca scale >/dev/null
  start_sampler "$state/rotation-requests.tsv"
  t_staged=""; t_published=""; t_switched=""; t_reissued=""; t_finished=""
  # Records the seconds since the request in the variable named $1, and
  # the requests so far, the first time a step is seen.
  step_seen() {
    [ -z "${!1}" ] || return 0
    printf -v "$1" '%s' "$t"
    requests "rotate.${1#t_}" >/dev/null
  }
  poll=1
  [ "$n" -ge 5000 ] && poll=3
  while :; do
    read -r phase number trusted_since < <(kubectl get certificateauthorities --chunk-size=0 \
      -o jsonpath='{range .items[?(@.metadata.name=="scale")]}{.status.rotation.phase}{" "}{.status.rotation.number}{" "}{.status.rotation.record.nextTrustedSince}{"\n"}{end}') || true
    t=$(elapsed "$rotate_start")
    # When certop recorded the new CA published in every bundle and
    # ca.crt (its clock, to the second: the same machine's).
    if [ -z "$t_published" ] && [ -n "${trusted_since:-}" ] && [ "${number:-0}" -ge 1 ]; then
      t_published=$(echo "$(date -d "$trusted_since" +%s) - $rotate_start" | bc)
    fi
    if [ "${number:-0}" -ge 1 ]; then
      case "$phase" in
        Staged) step_seen t_staged ;;
        Retiring) step_seen t_staged; step_seen t_switched ;;
        Stable) step_seen t_staged; step_seen t_switched; step_seen t_finished ;;
      esac
    fi
    if [ -n "$t_switched" ] && [ -z "$t_reissued" ] &&
      [ "$(revisions | join - "$state/revisions.before" | awk '$2 > $4' | wc -l)" -ge "$n" ]; then
      t=$(elapsed "$rotate_start")
      step_seen t_reissued
    fi
    if [ -n "$t_finished" ] || [ "$(echo "$t > $rotate_cap" | bc)" = 1 ]; then break; fi
    sleep "$poll"
  done
  # What the retirement still does (the ca.crt of each Secret without
  # the old CA), until the operator is idle again.
  settle_start=$(now)
  read -r _ rotate_tail < <(wait_idle "$settle_start" "$log_from" "${IDLE_CAP:-600}")
  stop_sampler
  requests rotate.settled >/dev/null
  rotate_peak=$(peak_mib); rotate_rss=$(rss_mib)
  revisions >"$state/revisions.after"
  # Every Secret's certificate against the new CA alone, and the Secrets
  # whose ca.crt still holds the retired CA.
  ca_certificate >"$tmp/new-ca.pem"
  mkdir -p "$tmp/leaves"
  old_trusted=$(kubectl get secrets -n scale -o json | python3 -c '
import base64, json, sys
old = "".join(l for l in open(sys.argv[2]).read().split() if "-" not in l)
held = 0
for s in json.load(sys.stdin)["items"]:
    open(sys.argv[1] + "/" + s["metadata"]["name"] + ".pem", "wb").write(base64.b64decode(s["data"]["tls.crt"]))
    held += old in "".join(base64.b64decode(s["data"].get("ca.crt", "")).decode().split())
print(held)' "$tmp/leaves" "$tmp/old-ca.pem")
  verified=$(find "$tmp/leaves" -name '*.pem' -print0 | xargs -0 -r openssl verify -CAfile "$tmp/new-ca.pem" 2>/dev/null | grep -c ': OK$' || true)
fi
secrets=$(kubectl get secrets -n scale -o name | wc -l)
printf 'certificates: %d (Secrets written: %d)\n' "$n" "$secrets"
[ -z "$baseline" ] || printf 'baseline, %d TLS Secrets created by a Rust client, 16 in flight: %.1f s\n' "$n" "$baseline"
if [ "$backlog" = 1 ]; then
  printf 'certop, %d ClusterCertificates created before it started, from its start until all Ready: %.1f s (%.0f/s)\n' "$n" "$ours" "$(echo "$n / $ours" | bc -l)"
else
  printf 'certop, apply of %d ClusterCertificates (kubectl alone: %.1f s) until all Ready: %.1f s\n' "$n" "$applied" "$ours"
fi
[ -z "$baseline" ] || printf 'ratio certop/baseline: %.2f\n' "$(echo "$ours / $baseline" | bc -l)"
printf 'operator memory: %s MiB resident after, %s MiB peak (%.1f KiB per certificate at peak)\n' "$rss" "$peak" "$(echo "$peak * 1024 / $n" | bc -l)"
printf 'API requests by certop during the run: %d (%.1f per certificate); conflict lines in its log: %d\n' "$((after - before))" "$(echo "($after - $before) / $n" | bc -l)" "$conflicts"
breakdown before after
if [ "$restart" = 1 ]; then
  printf 'restart with %d present: stores listed %s s after the start, idle (no request for 5 s after) %s s after it\n' "$n" "$(seconds "$restart_listed")" "$(seconds "$restart_idle")"
  printf 'restart with %d present: API writes until idle (Leases left out): %s\n' "$n" "$("$root/scripts/request-profile.py" "$state/requests.restart.before" "$state/requests.restart.idle" "$n" --writes)"
  "$root/scripts/request-profile.py" "$state/requests.restart.before" "$state/requests.restart.idle" "$n"
  printf 'restart with %d present: operator memory %s MiB peak, %s MiB resident when idle\n' "$n" "$restart_peak" "$restart_rss"
  printf 'restart with %d present: a certificate created once it was idle Ready %.1f s after its apply (%.1f s after the start); Secrets re-issued or rewritten by the restart: %d\n' "$n" "$probe_s" "$probe_since_start" "$reissued"
fi
if [ "$rotate" = 1 ]; then
  python3 - "$state/revisions.before" "$state/revisions.after" "$state/rotation-requests.tsv" "$n" "$qps" "$burst" \
    "${t_staged:--}" "${t_switched:--}" "${t_reissued:--}" "${t_finished:--}" "$(seconds "$rotate_settled")" "$rotate_peak" "$rotate_rss" "$verified" \
    "${t_published:--}" "$(seconds "$rotate_tail")" "$old_trusted" <<'PY'
import sys
before_path, after_path, samples_path = sys.argv[1:4]
n, qps, burst = int(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6])
staged, switched, reissued, finished = [None if v == "-" else float(v) for v in sys.argv[7:11]]
settled, peak, rss, verified = sys.argv[11], sys.argv[12], sys.argv[13], int(sys.argv[14])
published = None if sys.argv[15] == "-" else float(sys.argv[15])
tail, old_trusted = sys.argv[16], int(sys.argv[17])
rows = lambda path: {l.split()[0]: l.split()[1:] for l in open(path) if l.strip()}
before, after = rows(before_path), rows(after_path)
steps = {}
for name, (rev, serial) in before.items():
    new = after.get(name, ["0", ""])
    d = int(new[0] or 0) - int(rev)
    key = "once" if d == 1 and new[1] != serial else "not" if d == 0 else "twice or more" if d > 1 else "other"
    steps[key] = steps.get(key, 0) + 1
f = lambda v: "-" if v is None else f"{v:.1f} s"
d = lambda a, b: "-" if a is None or b is None else f"{b - a:.1f} s"
print(f"rotation with {n} present (overlap 1m, --kube-api-qps {qps:g} --kube-api-burst {burst}; the operator started with them was idle {settled} s after its start):")
print(f"rotation: request -> Staged {f(staged)}, -> switch (RotationSwitched) {f(switched)}, -> every certificate re-issued {f(reissued)}, -> retired (RotationFinished) {f(finished)}")
print(f"rotation: Staged -> switch {d(staged, switched)} (the new CA recorded as published in every bundle and ca.crt {f(published)} after the request, to the second), "
      f"switch -> every certificate re-issued {d(switched, reissued)}, switch -> retired {d(switched, finished)}; idle {tail} s after the retirement was seen")
print(f"rotation: re-issued exactly once (revision +1, new serial): {steps.get('once', 0)}/{n}; not re-issued: {steps.get('not', 0)}; "
      f"more than once: {steps.get('twice or more', 0)}; other: {steps.get('other', 0)}; Secrets that verify against the new CA alone: {verified}/{n}; "
      f"Secrets whose ca.crt still holds the retired CA once idle: {old_trusted}/{n}")
samples = [tuple(map(float, l.split())) for l in open(samples_path) if len(l.split()) == 2]
# After the first sample, the counts hold the rotate-ca command's GET and PATCH.
samples = samples[:1] + [(t, c - 2) for t, c in samples[1:]]
if len(samples) >= 2:
    span = samples[-1][0] - samples[0][0]
    total = samples[-1][1] - samples[0][1]
    ones = [(c1 - c0) / (t1 - t0) for (t0, c0), (t1, c1) in zip(samples, samples[1:]) if t1 > t0]
    tens, excess = [], 0.0
    for i, (t0, c0) in enumerate(samples):
        for t1, c1 in samples[i + 1:]:
            # A token bucket lets through at most burst + qps * t in any t seconds.
            excess = max(excess, (c1 - c0) - qps * (t1 - t0))
            if t1 - t0 >= 10 and len(tens) <= i:
                tens.append((c1 - c0) / (t1 - t0))
    print(f"rotation: operator API requests {int(total)} in {span:.0f} s ({total / max(span, 1e-9):.0f}/s, {total / n:.1f} per certificate); "
          f"1 s samples max {max(ones):.0f}/s; 10 s windows max {max(tens, default=0):.0f}/s (the bucket allows {(burst + qps * 10) / 10:.0f}); "
          f"most beyond qps x time in any window {excess:.0f} (the bucket allows {burst})")
print(f"rotation: operator memory {peak} MiB peak from the request, {rss} MiB resident at the end")
PY
  # Where the requests went in each step (the script's LISTs included).
  from=requested
  for step in staged switched reissued finished settled; do
    [ -f "$state/requests.rotate.$step" ] || continue
    echo "rotation, $from -> $step:"
    "$root/scripts/request-profile.py" "$state/requests.rotate.$from" "$state/requests.rotate.$step" "$n" --line
    from=$step
  done
fi
rm -rf "$tmp"
