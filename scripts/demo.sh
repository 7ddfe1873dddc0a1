#!/usr/bin/env bash
# See certop work, then exit: builds everything, starts a real control plane
# (kube-apiserver + etcd), installs the CRDs, applies manifests/examples/,
# shows what kubectl shows, and stops what it started.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
state="$root/.certop-dev/demo"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "building certop (a first build takes a few minutes; cargo shows its progress)"
cargo build --bin certop
certop="${CARGO_TARGET_DIR:-$root/target}/debug/certop"

step "starting a control plane (kube-apiserver v1.36.3 + etcd)"
operator_pid=""
cleanup() {
  [ -n "$operator_pid" ] && kill "$operator_pid" 2>/dev/null && wait "$operator_pid" 2>/dev/null
  scripts/dev-control-plane.sh down "$state" >/dev/null 2>&1 || true
}
trap cleanup EXIT
scripts/dev-control-plane.sh up "$state"
export KUBECONFIG="$state/kubeconfig"
printf 'readyz: %s\n' "$(kubectl get --raw /readyz)"
kubectl get crd -l '!nothing' -o name | grep certop.dev

step "offline: certop pki issues and inspects without a cluster"
tmp="$(mktemp -d)"
"$certop" pki ca create --name "demo CA" --out "$tmp/ca"
"$certop" pki issue --ca "$tmp/ca" -f <(kubectl create --dry-run=client -o yaml -f manifests/examples/web-server.yaml) --out "$tmp/web"
"$certop" pki inspect "$tmp/web/tls.crt" | head -14
openssl verify -CAfile "$tmp/ca/ca.crt" "$tmp/web/tls.crt"
rm -rf "$tmp"

step "installing the operator's namespace, least-privilege RBAC and the policy admission guard (manifests/)"
kubectl apply -f manifests/namespace.yaml -f manifests/rbac.yaml -f manifests/policy-admission.yaml -f manifests/pod-certificate-admission.yaml -f manifests/certificate-finalizer-admission.yaml
# kube-apiserver admits ClusterCertificates through the finalizer policy
# once it has loaded the CRDs' schema, a few seconds after they appear.
for _ in $(seq 1 120); do
  kubectl create --dry-run=server -o 'jsonpath={.metadata.finalizers}' -f manifests/examples/web-server.yaml 2>/dev/null | grep -q certop.dev/cleanup && break
  sleep 0.5
done

step "running the operator as its ServiceAccount (certop run)"
# The namespaces the shipped Deployment manages (default, kube-system: the examples').
KUBECONFIG="$state/operator.kubeconfig" "$certop" run --http-addr 127.0.0.1:18080 "$(scripts/manage-namespaces.sh)" >"$state/operator.log" 2>&1 &
operator_pid=$!
for _ in $(seq 1 100); do curl -fs 127.0.0.1:18080/readyz >/dev/null 2>&1 && break; sleep 0.1; done
echo "operator ready (pid $operator_pid, log $state/operator.log)"

step "applying manifests/examples/: three CAs and the control-plane certificates"
kubectl apply -k manifests/examples/
kubectl wait --for=condition=Ready certificateauthorities --all --timeout=60s
kubectl wait --for=condition=Ready clustercertificates --all --timeout=60s

step "kubectl get certificateauthorities,clustercertificates"
kubectl get certificateauthorities,clustercertificates

step "kubectl describe clustercertificate apiserver"
kubectl describe clustercertificate apiserver

step "kubectl certop check-expiration"
"$certop" check-expiration

step "the API server certificate verifies with openssl against its CA"
tmp="$(mktemp -d)"
kubectl get secret -n kube-system apiserver -o jsonpath='{.data.tls\.crt}' | base64 -d >"$tmp/tls.crt"
kubectl get secret -n kube-system apiserver -o jsonpath='{.data.ca\.crt}' | base64 -d >"$tmp/ca.crt"
openssl verify -CAfile "$tmp/ca.crt" "$tmp/tls.crt"
rm -rf "$tmp"

step "revocation: kubectl certop revoke web; the certificate is replaced and the CRL lists it"
old_serial="$(kubectl get clustercertificate web -o jsonpath='{.status.serialNumber}')"
"$certop" revoke web --reason keyCompromise
kubectl wait --for=jsonpath='{.status.conditions[?(@.type=="Ready")].reason}'=Reissued clustercertificate/web --timeout=60s
echo "old serial $old_serial, new serial $(kubectl get clustercertificate web -o jsonpath='{.status.serialNumber}')"
kubectl get certificaterevocations
curl -fsS -o "$state/cluster.crl" 127.0.0.1:18080/crl/cluster.crl
openssl crl -inform DER -in "$state/cluster.crl" -noout -text | grep -E 'Last Update|Next Update|CRL Number|Serial Number|Key Compromise' -A1 | grep -vE '^--|Signature'

step "CA rotation: kubectl certop rotate-ca etcd (overlap shortened to its 1m minimum for the demo: about 4 minutes)"
kubectl patch certificateauthority etcd --type merge -p '{"spec":{"rotation":{"overlap":"1m"}}}'
old_ca="$(kubectl get certificateauthority etcd -o jsonpath='{.status.serialNumber}')"
"$certop" rotate-ca etcd
kubectl wait --for=jsonpath='{.status.rotation.phase}'=Staged certificateauthority/etcd --timeout=60s
kubectl get certificateauthority etcd
kubectl wait --for=jsonpath='{.status.rotation.phase}'=Retiring certificateauthority/etcd --timeout=240s
kubectl get certificateauthority etcd
kubectl wait --for=jsonpath='{.status.rotation.phase}'=Stable certificateauthority/etcd --timeout=420s
kubectl get certificateauthority etcd
echo "CA serial $old_ca rotated to $(kubectl get certificateauthority etcd -o jsonpath='{.status.serialNumber}')"
kubectl get events --field-selector involvedObject.name=etcd -o custom-columns=REASON:.reason,MESSAGE:.message | grep Rotation | cut -c1-150
tmp="$(mktemp -d)"
kubectl get secret -n kube-system etcd-server-cp-1 -o jsonpath='{.data.tls\.crt}' | base64 -d >"$tmp/tls.crt"
kubectl get secret -n kube-system etcd-server-cp-1 -o jsonpath='{.data.ca\.crt}' | base64 -d >"$tmp/ca.crt"
echo "etcd-server-cp-1 re-issued by the new CA: $(openssl verify -CAfile "$tmp/ca.crt" "$tmp/tls.crt")"
rm -rf "$tmp"

step "a metric: certificate expiry timestamps"
curl -s 127.0.0.1:18080/metrics | grep '^certop_certificate_expiration_timestamp_seconds' | head -3

step "done; stopping the control plane"
