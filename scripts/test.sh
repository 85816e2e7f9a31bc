#!/usr/bin/env bash
# Every test: formatting and lints, unit tests of the core, CLI tests, and integration tests
# through the real gateway.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$HOME/.local/bin:$PATH"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
# Formatting and lints first: a style failure fails the run, but the tests still run.
cargo fmt --all --check || status=$?
cargo clippy --workspace --all-targets --locked -- -D warnings || status=$?
cargo test --workspace --locked --no-fail-fast 2>&1 | tee "$log" || status=$?
# One closing line for the whole run, summed over every test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed;?$/) p += $(i-1); if ($i ~ /^failed;?$/) f += $(i-1) } }
     END { printf "%d passed, %d failed\n", p, f }' "$log"
exit "$status"
