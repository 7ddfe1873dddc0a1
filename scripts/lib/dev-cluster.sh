# shellcheck shell=bash
# What the scale, storm, chaos and bench-compare scripts share: a fresh
# development control plane (scripts/dev-control-plane.sh) with certop's
# namespace and RBAC, and certop run as its ServiceAccount, started and
# stopped. Source it after setting `root` (the repository) and `certop`
# (the binary); it sets `managed`, `operator_pid` and exports KUBECONFIG.

operator_pid=""
managed=""

# A fresh control plane in STATE with certop's namespace, RBAC and the
# policy that sets its finalizer on each new ClusterCertificate, and the
# namespaces named after it, which certop manages (`managed` is the flag).
dev_cluster_up() {
  local state="$1"
  shift
  dev_cluster_down "$state"
  rm -rf "$state"
  "$root/scripts/dev-control-plane.sh" up "$state" >/dev/null
  export KUBECONFIG="$state/kubeconfig"
  kubectl apply -f "$root/manifests/namespace.yaml" -f "$root/manifests/rbac.yaml" \
    -f "$root/manifests/certificate-finalizer-admission.yaml" >/dev/null
  wait_certificate_admission
  local ns
  for ns in "$@"; do kubectl create namespace "$ns" >/dev/null; done
  managed="$("$root/scripts/manage-namespaces.sh" "$@")"
}

# Until kube-apiserver has loaded the CRDs' schema for the finalizer policy
# (a MutatingAdmissionPolicy), it refuses ClusterCertificate creates with
# ServiceUnavailable: waits until a server-side dry run is admitted with
# the finalizer set (the policy in force, the schema loaded).
wait_certificate_admission() {
  local _
  for _ in $(seq 1 120); do
    printf 'apiVersion: certop.dev/v1\nkind: ClusterCertificate\nmetadata: {name: admission-probe}\nspec:\n  issuerRef: {name: probe}\n  secretName: probe\n  secretNamespace: default\n  commonName: probe\n' |
      kubectl create --dry-run=server -o 'jsonpath={.metadata.finalizers}' -f - 2>/dev/null | grep -q certop.dev/cleanup && return 0
    sleep 0.5
  done
  echo "ClusterCertificates are not admitted after 60 s" >&2
  return 1
}

dev_cluster_down() {
  "$root/scripts/dev-control-plane.sh" down "$1" >/dev/null 2>&1 || true
}

# Starts `certop run` as certop's ServiceAccount of the control plane in
# STATE, serving HTTP on PORT, appending to LOG, with any further flags;
# returns once it answers /readyz (at most 10 s). OPERATOR_WRAPPER, if
# set, is a command to run it under (a profiler).
operator_start() {
  local state="$1" port="$2" log="$3"
  shift 3
  # shellcheck disable=SC2086
  KUBECONFIG="$state/operator.kubeconfig" ${OPERATOR_WRAPPER:-} "$certop" run \
    --http-addr "127.0.0.1:$port" "$managed" "$@" >>"$log" 2>&1 &
  operator_pid=$!
  local _
  for _ in $(seq 1 100); do
    curl -fs "127.0.0.1:$port/readyz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
}

# Stops the operator started last: SIGTERM (graceful, releases the lease)
# unless a signal is given (KILL: a crash).
operator_stop() {
  local signal="${1:-TERM}"
  [ -n "$operator_pid" ] || return 0
  # Under a wrapper the operator is the wrapper's child.
  pkill "-$signal" -P "$operator_pid" -f "$certop" 2>/dev/null || true
  kill "-$signal" "$operator_pid" 2>/dev/null || true
  wait "$operator_pid" 2>/dev/null || true
  operator_pid=""
}

# Every API request the server has counted so far, discovery and metric
# scrapes (which have no API version) left out.
api_requests_total() {
  kubectl get --raw /metrics | grep '^apiserver_request_total{' | grep -v 'version=""' |
    awk '{s += $NF} END {printf "%d", s}'
}
