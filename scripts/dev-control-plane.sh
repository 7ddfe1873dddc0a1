#!/usr/bin/env bash
# Starts or stops a local control plane in the background.
#   dev-control-plane.sh up DIR    kubeconfig at DIR/kubeconfig, log at DIR/control-plane.log
#   dev-control-plane.sh down DIR
# With KMS=1, Secrets are encrypted at rest through `certop kms serve`
# (socket DIR/kms.sock, keys in DIR/kms-keys, log DIR/kms.log);
# scripts/etcd-raw.sh shows what etcd stores. APISERVER_ARGS adds
# kube-apiserver flags (space-separated, e.g. "--client-ca-file=F").
# With PODCERTS=1, kube-apiserver serves PodCertificateRequests and
# ClusterTrustBundles (certificates.k8s.io/v1beta1), off by default in 1.36:
# the flags certop names when they are missing (a unit test keeps them equal).
set -euo pipefail
cmd="${1:?up or down}"
dir="${2:?state directory}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
pidfile="$dir/control-plane.pid"
kms_pidfile="$dir/kms.pid"

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

case "$cmd" in
up)
  if ! running; then
  bin="$("$root/tests/control-plane/build.sh")"
  rm -f "$dir/kubeconfig"
  extra=()
  if [ "${KMS:-0}" = 1 ]; then
    certop="${CERTOP:-$root/target/debug/certop}"
    mkdir -p "$dir/kms-keys" && chmod 700 "$dir/kms-keys"
    rm -f "$dir/kms.sock"
    nohup "$certop" kms serve --socket "$dir/kms.sock" --key-dir "$dir/kms-keys" \
      >>"$dir/kms.log" 2>&1 </dev/null &
    echo $! >"$kms_pidfile"
    for _ in $(seq 1 50); do [ -S "$dir/kms.sock" ] && break; sleep 0.1; done
    [ -S "$dir/kms.sock" ] || { echo "certop kms serve did not start; see $dir/kms.log" >&2; exit 1; }
    cat >"$dir/encryption.yaml" <<YAML
apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [secrets]
    providers:
      - kms:
          apiVersion: v2
          name: certop
          endpoint: unix://$dir/kms.sock
          timeout: 3s
      - identity: {}
YAML
    extra+=("--apiserver-arg=--encryption-provider-config=$dir/encryption.yaml")
  fi
  if [ "${PODCERTS:-0}" = 1 ]; then
    PODCERT_FLAGS="--feature-gates=PodCertificateRequest=true,ClusterTrustBundle=true,ClusterTrustBundleProjection=true --runtime-config=certificates.k8s.io/v1beta1=true"
    for arg in $PODCERT_FLAGS; do extra+=("--apiserver-arg=$arg"); done
  fi
  for arg in ${APISERVER_ARGS:-}; do extra+=("--apiserver-arg=$arg"); done
  nohup "$bin" --kubeconfig "$dir/kubeconfig" --log-file "$dir/control-plane.log" "${extra[@]}" \
    >"$dir/control-plane.out" 2>&1 </dev/null &
  echo $! >"$pidfile"
  for _ in $(seq 1 600); do
    if [ -s "$dir/kubeconfig" ]; then break; fi
    if ! running; then
      # Its exit status and the free space tell a signal (128+N) or a full
      # disk (logs left empty) from an error it logged.
      status=0
      wait "$(cat "$pidfile")" || status=$?
      echo "control plane exited with status $status; its log:" >&2
      tail -n 40 "$dir/control-plane.log" "$dir/control-plane.out" >&2 || true
      df -h "$dir" >&2 || true
      exit 1
    fi
    sleep 0.2
  done
  [ -s "$dir/kubeconfig" ] || { echo "control plane not ready after 120s; see $dir/control-plane.log" >&2; exit 1; }
  fi
  KUBECONFIG="$dir/kubeconfig" kubectl apply --server-side -f "$root/crds/certop-crds.yaml" >/dev/null
  KUBECONFIG="$dir/kubeconfig" kubectl wait --for condition=established --timeout=60s \
    crd/clustercertificates.certop.dev crd/certificateauthorities.certop.dev >/dev/null
  echo "control plane up (pid $(cat "$pidfile")); export KUBECONFIG=$dir/kubeconfig"
  if [ -f "$kms_pidfile" ]; then echo "Secrets encrypted through certop kms serve (pid $(cat "$kms_pidfile")); see scripts/etcd-raw.sh"; fi
  ;;
down)
  if running; then
    pid="$(cat "$pidfile")"
    kill "$pid"
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
    echo "control plane stopped"
  else
    echo "no control plane running"
  fi
  rm -f "$pidfile"
  if [ -f "$kms_pidfile" ]; then
    kill "$(cat "$kms_pidfile")" 2>/dev/null || true
    rm -f "$kms_pidfile"
    echo "KMS plugin stopped (its keys stay in $dir/kms-keys)"
  fi
  ;;
*)
  echo "usage: $0 up|down DIR" >&2
  exit 2
  ;;
esac
