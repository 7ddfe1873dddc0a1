#!/usr/bin/env bash
# Prints the bytes etcd stores under KEY, as kube-apiserver wrote them
# (e.g. k8s:enc:kms:v2:certop:... for an encrypted Secret), read from etcd's
# JSON gateway with curl, not through the API server.
#   scripts/etcd-raw.sh /registry/secrets/NAMESPACE/NAME
# The etcd of `make dev-up` is found in .certop-dev (or $DEV_DIR); set
# ETCD to another client URL to read elsewhere.
set -euo pipefail
key="${1:?usage: $0 KEY, e.g. /registry/secrets/default/my-secret}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="${DEV_DIR:-$root/.certop-dev}"
etcd="${ETCD:-$(grep -o 'etcd=[^ ]*' "$dir/control-plane.out" 2>/dev/null | cut -d= -f2 || true)}"
[ -n "$etcd" ] || { echo "no etcd: run make dev-up, or set ETCD=http://HOST:PORT" >&2; exit 1; }
curl -fsS -X POST "$etcd/v3/kv/range" -d "{\"key\":\"$(printf '%s' "$key" | base64 -w0)\"}" |
  python3 -c '
import base64, json, sys
kvs = json.load(sys.stdin).get("kvs") or []
if not kvs:
    sys.exit("etcd has no such key")
sys.stdout.buffer.write(base64.b64decode(kvs[0]["value"]))
'
