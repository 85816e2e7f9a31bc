#!/usr/bin/env bash
# The gateway's main job on the bundled policy: mock partners + gateway on loopback, sample traffic,
# and what each partner received next to what OhSoft sent.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh build
export PATH="$HOME/.local/bin:$PATH"
cargo run --quiet --bin partner-gateway -- demo --policy policy/
