#!/usr/bin/env bash
# The filter engine today against the engine before drift tracking and the speed work
# (commit ae91c34), in the same run, on the filter benchmark's 1 MiB body and policy.
#
#   benches/filter_then_now.sh [SECONDS] [ROUNDS]    # defaults: 3 s per timing, 4 rounds
#
# Builds both engines' timing programs in release (the earlier one in a temporary git worktree,
# with `benches/support/filter_then.rs` as its example; it must reproduce today's output byte for
# byte first), then runs them in alternation and prints each one's best time and the ratio.
# Best times, not means: on a shared machine the minimum is the stable figure. Not part of the
# test command (it builds the workspace's core twice).
set -euo pipefail
cd "$(dirname "$0")/.."
SECS="${1:-3}"
ROUNDS="${2:-4}"
THEN_REV="${FILTER_THEN_REV:-ae91c34}"
# Both engines built the same way: the release profile of today's workspace (fat LTO, one
# codegen unit), whatever the earlier commit's Cargo.toml said.
export CARGO_PROFILE_RELEASE_LTO=fat CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1
WORK="$(mktemp -d)"
cleanup() {
  git worktree remove --force "$WORK/then" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

git worktree add --detach --quiet "$WORK/then" "$THEN_REV"
mkdir -p "$WORK/then/crates/core/examples"
cp benches/support/filter_then.rs "$WORK/then/crates/core/examples/filter_then.rs"
cargo build --quiet --release -p partner-gateway-core --example filter_speed
(cd "$WORK/then" && cargo build --quiet --release -p partner-gateway-core --example filter_then \
  --target-dir "$OLDPWD/target/filter-then")
NOW=target/release/examples/filter_speed
THEN=target/filter-then/release/examples/filter_then
mkdir -p "$WORK/dump"
"$NOW" dump "$WORK/dump"

best_then=999999
best_now=999999
for round in $(seq "$ROUNDS"); do
  t=$("$THEN" "$WORK/dump" "$SECS" | sed -n 's/.*best \([0-9.]*\) ms.*/\1/p')
  n=$("$NOW" "$SECS" bench filter | sed -n 's/.*1MiB filter best \([0-9.]*\) ms.*/\1/p')
  echo "round $round: then $t ms, now $n ms"
  best_then=$(python3 -c "print(min($best_then, $t))")
  best_now=$(python3 -c "print(min($best_now, $n))")
done
python3 - "$best_then" "$best_now" <<'PY'
import sys
then, now = map(float, sys.argv[1:])
print(f"filter bench, 1 MiB body: then {then:.3f} ms, now {now:.3f} ms: "
      f"{then / now:.2f}x (3x would be {then / 3:.3f} ms)")
PY
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
