#!/usr/bin/env bash
# Builds the certop image on this machine, without a registry: a static
# binary (glibc, crt-static) in an image FROM scratch, non-root, made with
# buildah (Debian package; installed here if missing), tagged localhost/certop:TAG.
#   scripts/image.sh [TAG]          (make image)
set -euo pipefail
cd "$(dirname "$0")/.."
tag="${1:-dev}"
storage=(--storage-driver "${CERTOP_STORAGE_DRIVER:-vfs}")
if ! command -v buildah >/dev/null; then
  echo "installing buildah and podman (Debian packages)" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq buildah podman >/dev/null
fi
target=x86_64-unknown-linux-gnu
RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked --target "$target" --bin certop
bin="target/$target/release/certop"
if readelf -d "$bin" | grep -q NEEDED; then
  echo "$bin needs shared libraries; the scratch image has none" >&2
  exit 1
fi
ctr="$(buildah "${storage[@]}" from scratch)"
trap 'buildah "${storage[@]}" rm "$ctr" >/dev/null 2>&1 || true' EXIT
buildah "${storage[@]}" copy --chmod 0755 "$ctr" "$bin" /certop >/dev/null
buildah "${storage[@]}" config \
  --user 65532:65532 \
  --entrypoint '["/certop"]' --cmd run \
  --port 8080 \
  --label org.opencontainers.image.title=certop \
  --label org.opencontainers.image.description="certop: a cluster's internal PKI with zero touch" \
  "$ctr"
buildah "${storage[@]}" commit --rm "$ctr" "localhost/certop:$tag" >/dev/null
trap - EXIT
buildah "${storage[@]}" images --format '{{.Name}}:{{.Tag}} {{.Size}}' "localhost/certop:$tag"
