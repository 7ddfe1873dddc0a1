#!/usr/bin/env bash
# Builds the certop binary of an earlier commit of this repository (default:
# the one in ./commit, 48e64a4, tagged v0.1.0: named by its hash so a clone
# without tags builds it too) once and caches it by commit; prints the
# binary's path.
# The upgrade tests (tests/integration/upgrade.rs) run it as "the previous
# release".
#
# The commit's tree is extracted with `git archive` to a fixed directory in
# the cache (a fixed path keeps cargo's hash of that crate stable: a second
# cold build replaces the first one's artifacts instead of adding more) and
# built in this repository's target directory ($CARGO_TARGET_DIR, else
# ./target): with the same Cargo.lock the dependencies' artifacts are the
# ones `cargo test` already built, so only the old crate itself compiles.
# Two adjustments keep it from disturbing this tree's build, neither
# changing the program:
#  - its package and binary are renamed certop-previous (the library keeps
#    the name certop, which its code uses): cargo names a workspace crate's
#    artifacts by a hash of its name and its path relative to the
#    workspace, the same for both trees, so the old library would replace
#    this tree's in deps/ with a fingerprint cargo then takes for fresh
#    (its sources are older than the build), and cargo copies every binary
#    to <target>/debug/<name>, where a second `certop` would replace the one
#    `cargo test` runs (CARGO_BIN_EXE_certop);
#  - its smallest integration test is built beside it: cargo activates
#    dev-dependency features (tokio's test-util) only when a test, example
#    or bench target is requested, and `cargo test` builds this tree's
#    binary with them; without one every dependency that uses tokio would
#    build a second time. (Tests are not copied out of deps/ as examples
#    are, so nothing of this tree's is replaced.)
# Usage: build.sh [COMMIT]
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
wanted="${1:-$(cat "$repo/tests/previous-release/commit")}"
commit="$(git -C "$repo" rev-parse --verify --quiet "$wanted^{commit}")" || {
  echo "commit $wanted not found: the upgrade tests need the repository's history (not a shallow clone)" >&2
  exit 1
}
cache="${CERTOP_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/certop}"
bin="$cache/certop-${commit:0:12}"
if [ ! -x "$bin" ]; then
  src="$cache/previous-src/${commit:0:12}"
  rm -rf "$src"
  mkdir -p "$src"
  git -C "$repo" archive "$commit" | tar -x -C "$src"
  grep -q '^name = "certop"$' "$src/Cargo.toml" || { echo "no package certop in $commit's Cargo.toml" >&2; exit 1; }
  sed -i 's/^name = "certop"$/name = "certop-previous"/; s/^default-run = "certop"$/default-run = "certop-previous"/; s/^\[lib\]$/[lib]\nname = "certop"/' "$src/Cargo.toml"
  sed -i 's/^name = "certop"$/name = "certop-previous"/' "$src/Cargo.lock"
  [ "$(grep -c '^name = "certop-previous"$' "$src/Cargo.toml")" = 2 ] && grep -q '^name = "certop"$' "$src/Cargo.toml" ||
    { echo "cannot rename $commit's package and binary" >&2; exit 1; }
  test="$(cd "$src/tests" && ls -S ./*.rs | tail -n1 | xargs basename -s .rs)"
  target="${CARGO_TARGET_DIR:-$repo/target}"
  echo "building certop at ${commit:0:12} (the previous release) in $target; its dependencies are shared with this tree's build" >&2
  start=$(date +%s)
  (cd "$src" && CARGO_TARGET_DIR="$target" CARGO_INCREMENTAL=0 cargo build --locked --quiet \
    --bin certop-previous --test "$test")
  mkdir -p "$cache"
  cp "$target/debug/certop-previous" "$bin.tmp"
  mv "$bin.tmp" "$bin"
  echo "built certop ${commit:0:12} in $(( $(date +%s) - start ))s" >&2
  rm -rf "$src"
  rmdir "$cache/previous-src" 2>/dev/null || true
fi
echo "$bin"
