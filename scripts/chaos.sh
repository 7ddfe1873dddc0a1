#!/usr/bin/env bash
# Faults under load: N ClusterCertificates (RSA-2048 keys, so issuance takes
# a while) issued while the operator is killed with SIGKILL at KILLS random
# moments and started again each time, with a revocation now and then.
# Then: every certificate Ready, every Secret's key matches its certificate
# and chains to the CA (openssl), every certificate issued once (revision
# 1, or 2 for the revoked ones), one key for the CA, CRL numbers only ever
# increasing, and the final CRL lists every revoked serial.
#   scripts/chaos.sh [N] [KILLS]      (defaults 1000 and 20)
set -euo pipefail
n="${1:-1000}"
kills="${2:-20}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
state="$root/.certop-dev/chaos"
cargo build --quiet --release --bin certop
# A copy of what was just built (beside the state, which each run
# removes): a build of another checkout that shares the target directory
# cannot swap it under the run.
mkdir -p "$root/.certop-dev"
cp "${CARGO_TARGET_DIR:-$root/target}/release/certop" "$root/.certop-dev/chaos-certop.bin"
certop="$root/.certop-dev/chaos-certop.bin"
. scripts/lib/dev-cluster.sh
cleanup() {
  operator_stop KILL
  dev_cluster_down "$state"
}
trap cleanup EXIT
dev_cluster_up "$state" chaos
: >"$state/operator.log"
# A fresh lease each time: the killed leader's would hold the next one
# back for its duration, which tests the lease, not the faults.
start_operator() { operator_start "$state" 18091 "$state/operator.log" --lease-name "chaos-$RANDOM$RANDOM"; }
start_operator
printf 'apiVersion: certop.dev/v1\nkind: CertificateAuthority\nmetadata: {name: chaos}\nspec:\n  subject: {commonName: chaos}\n' | kubectl apply -f - >/dev/null
kubectl wait --for=condition=Ready certificateauthority/chaos --timeout=60s >/dev/null
# Created while the operator is stopped: the kills then fall in the middle
# of working the backlog, not of kubectl creating objects.
operator_stop KILL
for i in $(seq 1 "$n"); do
  printf -- '---\napiVersion: certop.dev/v1\nkind: ClusterCertificate\nmetadata: {name: c%d}\nspec:\n  issuerRef: {name: chaos}\n  secretName: c%d\n  secretNamespace: chaos\n  commonName: c%d.example\n  privateKey: {algorithm: RSA-2048}\n' "$i" "$i" "$i"
done | kubectl apply -f - >/dev/null
start_operator
crl_numbers=()
revoked=()
for k in $(seq 1 "$kills"); do
  sleep "$(python3 -c 'import random; print(round(random.uniform(0.5, 1.5), 2))')"
  operator_stop KILL
  ready=$(kubectl get clustercertificates -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c True || true)
  crl_numbers+=("$(kubectl get certificateauthority chaos -o jsonpath='{.status.crlNumber}')")
  echo "kill $k: $ready of $n Ready"
  start_operator
  if [ $((k % 5)) = 0 ]; then
    serial="$(kubectl get clustercertificate "c$k" -o jsonpath='{.status.serialNumber}')"
    if [ -n "$serial" ]; then
      printf 'apiVersion: certop.dev/v1\nkind: CertificateRevocation\nmetadata: {name: r%d}\nspec:\n  issuerRef: {name: chaos}\n  serialNumbers: ["%s"]\n  reason: keyCompromise\n' "$k" "$serial" | kubectl apply -f - >/dev/null
      revoked+=("$serial")
    fi
  fi
done
start=$(date +%s)
until [ "$(kubectl get clustercertificates -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c True)" -ge "$n" ]; do
  sleep 1
  [ $(( $(date +%s) - start )) -lt 600 ] || { echo "not all Ready after 10 minutes" >&2; exit 1; }
done
for r in $(kubectl get certificaterevocations -o name); do
  kubectl wait --for=condition=Ready "$r" --timeout=120s >/dev/null
done
crl_numbers+=("$(kubectl get certificateauthority chaos -o jsonpath='{.status.crlNumber}')")
echo "all $n Ready $(( $(date +%s) - start )) s after the last kill"

tmp="$(mktemp -d)"
kubectl get secret -n certop-system chaos-ca -o jsonpath='{.data.tls\.crt}' | base64 -d >"$tmp/ca.crt"
kubectl get secrets -n chaos -o json >"$tmp/secrets.json"
kubectl get clustercertificates -o json >"$tmp/certs.json"
curl -fsS -o "$tmp/crl.der" 127.0.0.1:18091/crl/chaos.crl
python3 - "$tmp" "$n" "${revoked[*]:-}" "${crl_numbers[*]}" <<'PY'
import base64, json, os, subprocess, sys
tmp, n, revoked, numbers = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), [int(x or 0) for x in sys.argv[4].split()]
bad = []
for s in json.load(open(f"{tmp}/secrets.json"))["items"]:
    name = s["metadata"]["name"]
    for k in ("tls.crt", "tls.key"):
        open(f"{tmp}/{k}", "wb").write(base64.b64decode(s["data"][k]))
    pub = lambda args: subprocess.run(args, capture_output=True).stdout
    if pub(["openssl", "x509", "-in", f"{tmp}/tls.crt", "-noout", "-pubkey"]) != pub(["openssl", "pkey", "-in", f"{tmp}/tls.key", "-pubout"]):
        bad.append(f"{name}: key does not match")
    if subprocess.run(["openssl", "verify", "-CAfile", f"{tmp}/ca.crt", f"{tmp}/tls.crt"], capture_output=True).returncode:
        bad.append(f"{name}: does not chain to the CA")
revisions = {}
for c in json.load(open(f"{tmp}/certs.json"))["items"]:
    r = c.get("status", {}).get("revision")
    revisions[r] = revisions.get(r, 0) + 1
crl = subprocess.run(["openssl", "crl", "-inform", "DER", "-in", f"{tmp}/crl.der", "-noout", "-text"], capture_output=True, text=True).stdout.upper()
missing = [s for s in revoked if s.upper().lstrip("0") not in crl.replace(":", "")]
print(f"Secrets checked: {n}; key or chain problems: {len(bad)} {bad[:3]}")
print(f"revisions: {dict(sorted(revisions.items(), key=str))} (revoked: {len(revoked)})")
print(f"CRL numbers seen at each kill and at the end: {numbers}; never decreasing: {numbers == sorted(numbers)}")
print(f"revoked serials missing from the CRL: {missing}")
sys.exit(1 if bad or missing or numbers != sorted(numbers) or revisions.get(1, 0) + revisions.get(2, 0) != n else 0)
PY
cas=$(kubectl get secrets -n certop-system -o name | grep -c '^secret/chaos-ca' || true)
echo "CA key Secrets: $cas (one key)"
[ "$cas" = 1 ]
echo "operator log: $(grep -c ' ERROR ' "$state/operator.log" || true) ERROR lines, $(grep -c 'panicked' "$state/operator.log" || true) panics"
