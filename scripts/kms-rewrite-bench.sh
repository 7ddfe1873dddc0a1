#!/usr/bin/env bash
# Re-encryption after a KEK rotation, measured on a real control plane with
# Secrets encrypted through certop kms serve:
#   certop kms rewrite (rewrite every Secret + prove from etcd + retire)
#   against kubectl's documented way (get secrets -A -o json | kubectl replace -f -).
# Each run starts only once kube-apiserver uses the new KEK (it polls the
# plugin's status about once a minute), so the wait is not counted.
#   scripts/kms-rewrite-bench.sh [N]      (default 10000 Secrets)
set -euo pipefail
n="${1:-10000}"
now() { python3 -c 'import time; print(time.time())'; }
since() { python3 -c "import time; print(round(time.time() - $1, 1))"; }
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
cargo build --release --quiet --bin certop
certop="$root/target/release/certop"
dir="$(mktemp -d)"
trap 'scripts/dev-control-plane.sh down "$dir" >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
KMS=1 CERTOP="$certop" scripts/dev-control-plane.sh up "$dir" >/dev/null
export KUBECONFIG="$dir/kubeconfig"
etcd="$(grep -o 'etcd=[^ ]*' "$dir/control-plane.out" | cut -d= -f2)"
keys="$dir/kms-keys"

kubectl create namespace kms-bench >/dev/null
echo "creating $n Secrets"
start=$(now)
python3 - "$n" >"$dir/secrets.json" <<'PY'
import json, sys
n = int(sys.argv[1])
items = [{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": f"s-{i:05d}", "namespace": "kms-bench"},
          "type": "Opaque", "stringData": {"tls.key": "x" * 240}} for i in range(n)]
json.dump({"apiVersion": "v1", "kind": "List", "items": items}, sys.stdout)
PY
kubectl create -f "$dir/secrets.json" >/dev/null
echo "created in $(since "$start") s"

# Rotates and waits until a new write is stored under the new KEK.
rotate_and_wait() {
  "$certop" kms rotate --key-dir "$keys" >/dev/null
  local id; id="$(cat "$keys/current")"
  for i in $(seq 1 40); do
    kubectl create secret generic "probe-$id-$i" -n kms-bench --from-literal=a=b >/dev/null
    if scripts/etcd-raw.sh "/registry/secrets/kms-bench/probe-$id-$i" 2>/dev/null | grep -qa "$id"; then
      return 0
    fi
    sleep 3
  done
  echo "kube-apiserver never used KEK $id" >&2; exit 1
}

export DEV_DIR="$dir"
rotate_and_wait
start=$(now)
"$certop" kms rewrite --key-dir "$keys" --encryption-config "$dir/encryption.yaml" --etcd-endpoint "$etcd" >"$dir/rewrite.out" 2>&1
certop_s=$(since "$start")
grep -E "rewrote|retired|etcd:" "$dir/rewrite.out"

rotate_and_wait
start=$(now)
kubectl get secrets -A -o json | kubectl replace -f - >/dev/null
kubectl_s=$(since "$start")

total=$(kubectl get secrets -A --no-headers | wc -l)
printf '\n%-55s %8s\n' "re-encryption of $total Secrets" "seconds"
printf '%-55s %8.1f\n' "certop kms rewrite (incl. etcd proof + retirement)" "$certop_s"
printf '%-55s %8.1f\n' "kubectl get -A -o json | kubectl replace -f - (baseline)" "$kubectl_s"
printf '%-55s %8.2f\n' "ratio certop / kubectl" "$(python3 -c "print($certop_s / $kubectl_s)")"
