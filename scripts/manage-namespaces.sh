#!/usr/bin/env bash
# Lets certop write into more namespaces, as docs/user-guide.md says for a
# kustomize install: a RoleBinding to the ClusterRole certop-managed-namespace
# in each (they must exist), and prints the --managed-namespaces flag that
# goes with it: the shipped list (manifests/deployment.yaml) and these.
# Usage: flag="$(scripts/manage-namespaces.sh NS...)"
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
for ns in "$@"; do
  kubectl create rolebinding certop-managed-namespace -n "$ns" \
    --clusterrole=certop-managed-namespace --serviceaccount=certop-system:certop \
    --dry-run=client -o yaml | kubectl apply -f - >/dev/null
done
shipped="$(grep -o -- '--managed-namespaces=[^" ]*' "$root/manifests/deployment.yaml")"
(IFS=,; echo "$shipped${*:+,$*}")
