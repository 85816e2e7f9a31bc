#!/usr/bin/env bash
# The load benchmark: partner-gateway against what users build instead, on this machine, in one
# run (interleaved rounds, ratios against baselines measured alongside). See the README section
# "Benchmarks" for what it starts and what the columns mean. Takes several minutes; not part
# of the test command.
#
#   benches/load/run.sh            # full run (ROUNDS=3, DURATION=10 s per target and size)
#   benches/load/run.sh --smoke    # one short round, to check that everything starts
#   benches/load/run.sh --memory   # the memory benchmark only (64 concurrent 8 MiB bodies)
#
# Knobs (environment): ROUNDS, DURATION, SIZES ("1k 1m"), TARGETS, CONNS_1K (64), CONNS_1M (16),
# EXTRA_GATEWAYS="before=path/to/partner-gateway ..." (other builds as targets: before/after in one run).
set -euo pipefail
cd "$(dirname "$0")/../.."

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || need+=(nginx-light)
[ -e /usr/lib/nginx/modules/ngx_http_lua_module.so ] || need+=(libnginx-mod-http-lua)
[ -e /usr/lib/x86_64-linux-gnu/lua/5.1/cjson.so ] || ls /usr/lib/*/lua/5.1/cjson.so >/dev/null 2>&1 || need+=(lua-cjson)
command -v openssl >/dev/null || need+=(openssl)
python3 -c 'import cryptography' 2>/dev/null || need+=(python3-cryptography)
if [ ${#need[@]} -gt 0 ]; then
    echo "installing ${need[*]}" >&2
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

cargo build --release --quiet --bin partner-gateway --example passthrough
exec python3 benches/load/load.py "$@"
