#!/usr/bin/env bash
# Streaming-route benchmark: pushes a large NDJSON upload (default 1 GiB) through a release
# gateway to a draining sink and prints throughput (MB/s) and the gateway's peak RSS (VmHWM).
# Baseline in the same run: the same upload straight to the sink.
#
#   benches/ndjson.sh                 # 1 GiB, ledger off
#   NDJSON_MIB=256 benches/ndjson.sh  # smaller
#   NDJSON_LEDGER=1 benches/ndjson.sh # with the disclosure ledger (1000 distinct customers)
#
# Not part of the test command. Needs python3 and a release build (built here if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
MIB="${NDJSON_MIB:-1024}"
BIN="${GATEWAY_BIN:-target/release/partner-gateway}"
if [[ ! -x "$BIN" ]]; then
  cargo build --release --bin partner-gateway
fi
BIN="$(realpath "$BIN")" # GATEWAY_BIN may be relative or absolute; the gateway runs elsewhere
WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
SINK_PORT=$(free_port)
GW_PORT=$(free_port)
ADMIN_PORT=$(free_port)

# The sink: reads every request body to its end (chunked or sized) and answers 200.
cat >"$WORK/sink.py" <<'PY'
import socket, sys, threading
def serve(conn):
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = conn.recv(65536)
        if not d: return
        buf += d
    head, rest = buf.split(b"\r\n\r\n", 1)
    h = head.lower()
    total = 0
    if b"transfer-encoding: chunked" in h:
        tail = rest[-7:]
        total = len(rest)
        while not tail.endswith(b"0\r\n\r\n"):
            d = conn.recv(1 << 20)
            if not d: return
            total += len(d)
            tail = (tail + d)[-7:]
    else:
        n = int([l for l in h.split(b"\r\n") if l.startswith(b"content-length:")][0].split(b":")[1])
        total = len(rest)
        while total < n:
            d = conn.recv(1 << 20)
            if not d: return
            total += len(d)
    body = b'{"received":%d}' % total
    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body))
    conn.close()
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(16)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
PY

# The client: one chunked POST of MIB MiB of NDJSON (a 1 MiB block of 1000 customers,
# repeated), then the answer; prints seconds taken.
cat >"$WORK/client.py" <<'PY'
import socket, sys, time
port, path, mib = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
lines, size, i = [], 0, 0
while size < (1 << 20):
    l = b'{"customer_id":"c-%d","city":"Ulm","phone":"0123456789","tags":["a","b"],"note":"%s"}\n' % (i % 1000, b"x" * (i % 40))
    lines.append(l); size += len(l); i += 1
block = b"".join(lines)
frame = b"%x\r\n" % len(block) + block + b"\r\n"
s = socket.create_connection(("127.0.0.1", port))
t = time.time()
s.sendall(b"POST %s HTTP/1.1\r\nhost: bench\r\ncontent-type: application/x-ndjson\r\ntransfer-encoding: chunked\r\n\r\n" % path.encode())
for _ in range(mib):
    s.sendall(frame)
s.sendall(b"0\r\n\r\n")
answer = b""
while True:
    d = s.recv(65536)
    if not d: break
    answer += d
    if b"\r\n\r\n" in answer and answer.rstrip().endswith(b"}"): break
dt = time.time() - t
status = answer.split(b" ", 2)[1].decode() if answer else "none"
print("%.3f %s %s" % (dt, status, len(block) * mib))
PY

python3 "$WORK/sink.py" "$SINK_PORT" & PIDS+=($!)

mkdir -p "$WORK/policy/partners"
LEDGER=""
if [[ "${NDJSON_LEDGER:-0}" == 1 ]]; then
  LEDGER=$'ledger:\n  path: data/ledger\n  subject_key_env: BENCH_LEDGER_KEY\n'
fi
cat >"$WORK/policy/gateway.yaml" <<YAML
listen: 127.0.0.1:$GW_PORT
admin_listen: 127.0.0.1:$ADMIN_PORT
limits: { max_body_bytes: 65536, max_depth: 16, upstream_timeout_ms: 60000, body_timeout_ms: 60000 }
optouts: { path: data/optouts }
callers: { allow_unauthenticated: true }
signing:
  issuer: https://partner-gateway.ohsoft.example
  key: $PWD/certs/data-use-signing.pem
  kid: data-use-1
${LEDGER}
YAML
cat >"$WORK/policy/partners/ads.yaml" <<YAML
kind: business_partner
purpose: marketing
upstream: http://127.0.0.1:$SINK_PORT
routes:
  - path: /v1/contacts
    methods: [POST]
    stream: ndjson
    subject: customer_id
    allow: [customer_id, city, 'tags[*]']
    transform:
      phone: last4
allowed_callers: [marketing]
YAML
(cd "$WORK" && BENCH_LEDGER_KEY=bench exec "$BIN" serve --policy policy/ 2>"$WORK/gateway.log") &
GW=$!
PIDS+=($GW)
for _ in $(seq 100); do
  curl -fsS "http://127.0.0.1:$ADMIN_PORT/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
RSS_START=$(awk '/VmHWM/ {print $2}' /proc/$GW/status)

echo "NDJSON upload of $MIB MiB (1000 customers, 1 MiB chunks), ledger ${NDJSON_LEDGER:-0}"
read -r T_DIRECT S_DIRECT BYTES < <(python3 "$WORK/client.py" "$SINK_PORT" /v1/contacts "$MIB")
CPU0=$(awk '{print $14+$15}' /proc/$GW/stat)
read -r T_GW S_GW _ < <(python3 "$WORK/client.py" "$GW_PORT" /ads/v1/contacts "$MIB")
CPU1=$(awk '{print $14+$15}' /proc/$GW/stat)
RSS_PEAK=$(awk '/VmHWM/ {print $2}' /proc/$GW/status)
TICK=$(getconf CLK_TCK)
python3 - "$BYTES" "$T_DIRECT" "$S_DIRECT" "$T_GW" "$S_GW" "$RSS_START" "$RSS_PEAK" "$((CPU1 - CPU0))" "$TICK" <<'PY'
import sys
b, td, sd, tg, sg, r0, r1, cpu, tick = sys.argv[1:]
b, td, tg = int(b), float(td), float(tg)
print("direct to the sink: %8.1f MB/s  (status %s)" % (b / td / 1e6, sd))
print("through the gateway: %7.1f MB/s  (status %s), %.2f s CPU in the gateway" % (b / tg / 1e6, sg, int(cpu) / int(tick)))
print("ratio gateway/direct: %.2f" % (td / tg))
print("gateway VmHWM: %d MiB at start, %d MiB peak" % (int(r0) // 1024, int(r1) // 1024))
PY
