#!/usr/bin/env bash
# Every test: unit tests of the core, CLI tests, and integration tests through the real gateway.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$HOME/.local/bin:$PATH"
cargo test --workspace --locked
