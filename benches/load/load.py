#!/usr/bin/env python3
"""Drives benches/load/run.sh: starts every target on free loopback ports, checks that the
filtering targets forward the same filtered body, then runs wrk against each target in
interleaved rounds and prints rps, p50, p99, CPU per request and peak RSS, with ratios.

Everything shares one machine (wrk included), so read the ratios, not the absolute numbers.
"""
import argparse
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
HERE = os.path.dirname(os.path.abspath(__file__))
# Where run.sh's `cargo build` put the binaries: CARGO_TARGET_DIR (relative to the repository,
# where run.sh builds) or the repository's target/.
TARGET = os.path.join(ROOT, os.environ.get("CARGO_TARGET_DIR") or "target")
GATEWAY = os.path.join(TARGET, "release", "partner-gateway")
PASSTHROUGH = os.path.join(TARGET, "release", "examples", "passthrough")
TICKS = os.sysconf("SC_CLK_TCK")
ECHO = "application/x-bench-echo"  # the sink answers with the body it received
PSEUDONYM_KEY = "load-bench-pseudonym-key-0123456789abcdef"

# The allow-list every filtering target applies (the gateway's policy, and the Lua copy of it).
ALLOW_RECORD = ["customer_id", "name", "address", "items"]
ALLOW_ITEM = ["sku", "qty"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc=None, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"a target exited while starting (port {port})")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on port {port}")


def record(i):
    """Record `i` of the shipment batch. benches/support/load_workload.rs writes the same bytes in
    Rust (with `body()` below and the route policy of `write_policy()`), so the filter engine can
    be timed on this workload alone: keep the two in step."""
    return {
        "customer_id": f"c-{1000 + i}",
        "name": "Ana Lima",
        "email": f"ana{i}@example.com",
        "phone": "+351 912 345 678",
        "card_number": "4111 1111 1111 1111",
        "address": {"street": "Rua das Flores 12", "city": "Porto", "postal_code": "4050-262", "country": "PT"},
        "items": [
            {"sku": "OHS-LAPTOP-14", "qty": 1, "unit_price": 1299.5},
            {"sku": "OHS-SLEEVE-14", "qty": 1, "unit_price": 39.9},
        ],
        "client": {"ip_address": "203.0.113.7", "user_agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Firefox/128.0"},
    }


def body(size):
    """A shipment batch of about `size` bytes (at least two records)."""
    def text(n):
        records = [record(i) for i in range(n)]
        return json.dumps({"order_id": "o-20260815-0042", "shipments": records}, separators=(",", ":"))

    per_record = len(text(2)) - len(text(1))
    n = max(2, size // per_record)
    while len(text(n)) < size:  # a few steps at most: records grow by a digit now and then
        n += max(1, (size - len(text(n))) // per_record)
    return text(n).encode()


def reference_filter(doc):
    """What every filtering target must forward, in Python."""
    def last4(v):
        digits = [c for c in str(v) if c.isdigit()]
        return "***" + ("".join(digits[-4:]) if len(digits) >= 8 else "")

    out = {"order_id": doc["order_id"], "shipments": []}
    for r in doc["shipments"]:
        kept = {k: r[k] for k in ALLOW_RECORD if k in r}
        kept["items"] = [{k: it[k] for k in ALLOW_ITEM if k in it} for it in r.get("items", [])]
        if "card_number" in r:
            kept["card_number"] = last4(r["card_number"])
        out["shipments"].append(kept)
    return out


class Proc:
    """A started process tree whose CPU time and peak RSS can be read from /proc."""

    def __init__(self, name, args, env=None, cwd=None):
        self.name = name
        self.log = open(os.path.join(WORK, f"{name}.log"), "wb")
        self.p = subprocess.Popen(args, env=env, cwd=cwd, stdout=self.log, stderr=subprocess.STDOUT)

    def pids(self):
        pids, todo = [], [self.p.pid]
        while todo:
            pid = todo.pop()
            pids.append(pid)
            try:
                with open(f"/proc/{pid}/task/{pid}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
            except OSError:
                pass
        return pids

    def cpu_seconds(self):
        total = 0
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])  # utime, stime
            except OSError:
                pass
        return total / TICKS

    def status_kib(self, field):
        total = 0
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/status") as f:
                    for line in f:
                        if line.startswith(field + ":"):
                            total += int(line.split()[1])
            except OSError:
                pass
        return total

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(5)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()


def nginx(name, server_block, workers="auto"):
    prefix = os.path.join(WORK, name)
    os.makedirs(os.path.join(prefix, "logs"), exist_ok=True)
    conf = os.path.join(prefix, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""
load_module /usr/lib/nginx/modules/ndk_http_module.so;
load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;
daemon off;
master_process on;
worker_processes {workers};
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log error;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    lua_package_cpath "/usr/lib/x86_64-linux-gnu/lua/5.1/?.so;;";
    client_max_body_size 0;
    client_body_buffer_size 16m;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
{server_block}
}}
""")
    return Proc(name, ["nginx", "-p", prefix, "-c", conf])


UPSTREAM = """
    upstream sink {{ server 127.0.0.1:{sink}; keepalive 128; }}
"""
PROXY = """
        proxy_pass http://sink;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_buffers 16 64k;
"""

LUA_FILTER = """
    init_by_lua_block {
        cjson = require "cjson"
        local function pick(t, keys)
            local out = {}
            for _, k in ipairs(keys) do if t[k] ~= nil then out[k] = t[k] end end
            return out
        end
        local function last4(v)
            local digits = tostring(v):gsub("%D", "")
            if #digits >= 8 then return "***" .. digits:sub(-4) end
            return "***"
        end
        function filter_shipments(doc)
            local out = { order_id = doc.order_id, shipments = {} }
            for i, r in ipairs(doc.shipments or {}) do
                local kept = pick(r, { "customer_id", "name", "address" })
                local items = {}
                for j, it in ipairs(r.items or {}) do items[j] = pick(it, { "sku", "qty" }) end
                kept.items = items
                if r.card_number ~= nil then kept.card_number = last4(r.card_number) end
                out.shipments[i] = kept
            end
            return out
        end
    }
"""
LUA_ACCESS = """
        access_by_lua_block {
            ngx.req.read_body()
            local body = ngx.req.get_body_data()
            if not body then return ngx.exit(413) end
            local ok, doc = pcall(cjson.decode, body)
            if not ok or type(doc) ~= "table" then return ngx.exit(400) end
            ngx.req.set_body_data(cjson.encode(filter_shipments(doc)))
        }
"""


def start_targets(names, ports, token_file):
    sink_port = ports["sink"]
    procs = {}
    procs["sink"] = nginx("sink", f"""
    server {{
        listen 127.0.0.1:{sink_port} backlog=4096;
        location / {{
            content_by_lua_block {{
                ngx.req.read_body()
                ngx.header["Content-Type"] = "application/json"
                if ngx.var.http_accept == "{ECHO}" then
                    ngx.print(ngx.req.get_body_data() or "")
                else
                    ngx.print('{{"ok":true}}')
                end
            }}
        }}
    }}""")
    wait_port(sink_port, procs["sink"].p)
    up = UPSTREAM.format(sink=sink_port)
    if "nginx" in names:
        procs["nginx"] = nginx("nginx", up + f"""
    server {{ listen 127.0.0.1:{ports['nginx']} backlog=4096; location / {{ {PROXY} }} }}""")
    if "nginx_lua" in names:
        procs["nginx_lua"] = nginx("nginx_lua", up + LUA_FILTER + f"""
    server {{ listen 127.0.0.1:{ports['nginx_lua']} backlog=4096; location / {{ {LUA_ACCESS} {PROXY} }} }}""")
    if "pingora" in names:
        procs["pingora"] = Proc("pingora", [PASSTHROUGH, f"127.0.0.1:{ports['pingora']}", f"127.0.0.1:{sink_port}"])
    for name in names:
        if name.startswith("gateway"):
            binary = binary_of(name)
            policy = write_policy(binary, name, ports[name], free_port(), sink_port,
                                  signing=signing_key(name.split("@")[0]))
            env = dict(os.environ, LOAD_PSEUDONYM_KEY=PSEUDONYM_KEY, RUST_LOG="error")
            procs[name] = Proc(name, [binary, "serve", "--policy", policy], env=env)
    for name in names:
        wait_port(ports[name], procs[name].p)
    return procs


def binary_of(name):
    """The gateway binary of a target: `gateway_es256@before` is the `before` build with an ES256 key."""
    label = name.partition("@")[2]
    return EXTRA.get(f"gateway@{label}", GATEWAY) if label else GATEWAY


def label_of(name):
    if name in LABELS:
        return LABELS[name]
    base, _, label = name.partition("@")
    return f"{LABELS.get(base, base)}, build {label!r}"


def signing_key(name):
    """The data-use signing key of a gateway target: Ed25519 (the demo key), a fresh P-256 key
    for `gateway_es256`, none for `gateway_nosign`."""
    if name == "gateway_nosign":
        return None
    if name != "gateway_es256":
        return f"{ROOT}/certs/data-use-signing.pem"
    key = os.path.join(WORK, "p256.pem")
    if not os.path.exists(key):
        subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-out", key], check=True, capture_output=True)
    return key


def write_policy(binary, name, port, admin, sink, signing):
    policy = os.path.join(WORK, name, "policy")
    os.makedirs(os.path.join(policy, "partners"), exist_ok=True)
    sign = (f"signing: {{ issuer: https://partner-gateway.ohsoft.example, "
            f"key: {signing}, kid: data-use-1 }}\n")
    gateway = (f"listen: 127.0.0.1:{port}\nadmin_listen: 127.0.0.1:{admin}\n"
               f"limits: {{ max_body_bytes: 16777216, max_depth: 64, upstream_timeout_ms: 30000 }}\n"
               f"callers: {{ issuer: https://auth.ohsoft.example, audience: partner-gateway, "
               f"keys: {ROOT}/certs/callers.jwks.json }}\n"
               f"optouts: {{ path: {os.path.join(WORK, name, 'optouts')} }}\n")
    partner = ("kind: contractor\npurpose: shipping\n"
               f"upstream: http://127.0.0.1:{sink}\n"
               "routes:\n  - path: /v1/shipments\n    methods: [POST]\n    records: shipments[*]\n    subject: customer_id\n"
               "    allow: [order_id, \"shipments[*].customer_id\", \"shipments[*].name\", "
               "\"shipments[*].address.**\", \"shipments[*].items[*].sku\", \"shipments[*].items[*].qty\"]\n"
               "    transform: { \"shipments[*].card_number\": last4 }\n"
               "allowed_callers: [orders-service]\n")
    with open(os.path.join(policy, "partners", "acme-ship.yaml"), "w") as f:
        f.write(partner)
    if signing:
        variants = [gateway + sign]
    else:
        # `signing: {disabled: true}` where this build knows it; an absent section otherwise.
        variants = [gateway + "signing: { disabled: true }\n", gateway]
    for text in variants:
        with open(os.path.join(policy, "gateway.yaml"), "w") as f:
            f.write(text)
        check = subprocess.run([binary, "check", "--policy", policy], capture_output=True)
        if check.returncode == 0:
            return policy
    raise SystemExit(f"the {name} policy does not pass check:\n{check.stdout.decode()}{check.stderr.decode()}")


def mint_tokens(count):
    """Distinct caller tokens (Python `cryptography`), so no request hits the token cache."""
    import base64
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    def b64(b):
        return base64.urlsafe_b64encode(b).rstrip(b"=").decode()

    with open(os.path.join(ROOT, "certs", "callers-demo.pem"), "rb") as f:
        key = load_pem_private_key(f.read(), None)
    now = int(time.time())
    head = b64(json.dumps({"alg": "EdDSA", "typ": "JWT", "kid": "callers-demo-1"}).encode())
    path = os.path.join(WORK, "tokens.txt")
    with open(path, "w") as out:
        for i in range(count):
            claims = {"iss": "https://auth.ohsoft.example", "aud": "partner-gateway", "sub": "orders-service",
                      "iat": now, "nbf": now, "exp": now + 3600, "jti": str(i)}
            body = b64(json.dumps(claims).encode())
            out.write(f"{head}.{body}.{b64(key.sign(f'{head}.{body}'.encode()))}\n")
    return path


def post(port, path, data, headers):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("POST", path, body=data, headers=headers)
    resp = conn.getresponse()
    out = resp.status, resp.read(), dict((k.lower(), v) for k, v in resp.getheaders())
    conn.close()
    return out


def verify_filtering(targets, paths, auth, bodies):
    """Each filtering target must forward what the reference filter says (parsed JSON compared)."""
    for label, data in bodies.items():
        expected = reference_filter(json.loads(data))
        for name in targets:
            if name not in FILTERING and not name.startswith("gateway"):
                continue
            headers = {"content-type": "application/json", "accept": ECHO, "authorization": auth}
            status, got, _ = post(PORTS[name], paths[name], data, headers)
            if status != 200 or json.loads(got) != expected:
                raise SystemExit(f"{name} forwards a different body for {label} (status {status}): "
                                 f"{got[:300]!r}")
        print(f"checked: {', '.join(n for n in targets if n in FILTERING or n.startswith('gateway'))} "
              f"forward the same filtered {label} body", flush=True)


WRK_SCRIPT = r"""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = assert(io.open(os.getenv("LOAD_BODY"), "rb"))
wrk.body = f:read("*a")
f:close()
local auth = os.getenv("LOAD_AUTH")
if auth and auth ~= "" then wrk.headers["Authorization"] = auth end
-- LOAD_TOKENS: a file of caller tokens, one a line, sent in turn (each thread from its own offset)
local tokens, n, i = {}, 0, 0
local threads = 0
setup = function(thread) thread:set("offset", threads) threads = threads + 1 end
init = function(args)
  local file = os.getenv("LOAD_TOKENS")
  if file and file ~= "" then
    for line in io.lines(file) do n = n + 1 tokens[n] = "Bearer " .. line end
    i = math.floor((offset or 0) * n / 2)
  end
end
request = function()
  if n > 0 then
    i = i % n + 1
    wrk.headers["Authorization"] = tokens[i]
  end
  return wrk.format()
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.stderr:write(string.format("LOADRESULT %d %d %d %d %d\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout))
end
"""


def run_wrk(proc, port, path, body_file, conns, duration, auth, tokens=""):
    script = os.path.join(WORK, "post.lua")
    env = dict(os.environ, LOAD_BODY=body_file, LOAD_AUTH=auth, LOAD_TOKENS=tokens)
    cpu0 = proc.cpu_seconds()
    res = subprocess.run(["wrk", "-t2", f"-c{conns}", f"-d{duration}s", "--timeout", "10s", "-s", script,
                          f"http://127.0.0.1:{port}{path}"], env=env, capture_output=True, text=True)
    cpu1 = proc.cpu_seconds()
    line = next((l for l in res.stderr.splitlines() if l.startswith("LOADRESULT")), None)
    if line is None:
        raise SystemExit(f"wrk failed: {res.stdout}{res.stderr}")
    n, dur_us, p50, p99, errors = (int(x) for x in line.split()[1:])
    return {
        "rps": n / (dur_us / 1e6),
        "p50_ms": p50 / 1000,
        "p99_ms": p99 / 1000,
        "cpu_us": (cpu1 - cpu0) * 1e6 / max(n, 1),
        "errors": errors,
        "requests": n,
    }


def summarize(results, targets, sizes, rounds, duration, conns):
    print()
    print(f"{rounds} interleaved round(s) of {duration} s per target and size; wrk -t2 on the same "
          f"{os.cpu_count()} CPU(s) as everything else; rps and CPU are means over rounds, "
          f"(min-max) in brackets; p50/p99 are medians over rounds")
    for size in sizes:
        print(f"\n### {size} JSON POST ({conns[size]} connections)\n")
        print("| target | rps | p50 ms | p99 ms | CPU µs/request | peak RSS MiB | errors |")
        print("|---|---|---|---|---|---|---|")
        mean = {}
        for t in targets:
            rs = results[size][t]
            if not rs:
                continue
            rps = [r["rps"] for r in rs]
            mean[t] = statistics.mean(rps)
            cpu = statistics.mean(r["cpu_us"] for r in rs)
            print(f"| {label_of(t)} | {mean[t]:,.0f} ({min(rps):,.0f}-{max(rps):,.0f}) "
                  f"| {statistics.median(r['p50_ms'] for r in rs):.2f} "
                  f"| {statistics.median(r['p99_ms'] for r in rs):.2f} | {cpu:,.0f} "
                  f"| {PEAK[t] / 1024:.0f} | {sum(r['errors'] for r in rs)} |")
        print()
        for g in [t for t in targets if t.startswith("gateway")]:
            for base in ["pingora", "nginx", "nginx_lua"]:
                if g in mean and base in mean:
                    print(f"{label_of(g)} / {LABELS[base]}: {mean[g] / mean[base]:.2f}×"
                          f"{per_round(results[size][g], results[size][base])}")


def per_round(target, base):
    """The ratio of each round (the two ran back to back in it) and their median: on a shared
    machine the rates drift between rounds, and a round's own ratio shows how far."""
    if len(target) < 2 or len(target) != len(base):
        return ""
    ratios = [t["rps"] / b["rps"] for t, b in zip(target, base) if b["rps"]]
    if not ratios:
        return ""
    listed = ", ".join(f"{r:.2f}" for r in ratios)
    return f" (rounds: {listed}; median {statistics.median(ratios):.2f}×)"


LABELS = {
    "nginx": "nginx proxy_pass",
    "nginx_lua": "nginx + Lua/cjson filter",
    "pingora": "bare pingora passthrough",
    "gateway": "partner-gateway (auth, filter, signed token)",
    "gateway_nosign": "partner-gateway, signing disabled",
    "gateway_es256": "partner-gateway, ES256 data-use tokens",
    "gateway_fresh": "partner-gateway, a new caller token per request",
}
FILTERING = ("nginx_lua", "gateway", "gateway_nosign", "gateway_es256")
# EXTRA_GATEWAYS="before=/path/to/partner-gateway glibc=/path/..." adds other builds of the
# gateway; `TARGETS=... gateway_es256@before` runs a variant target on such a build.
# gateway (auth, filter, signed token) as targets `gateway@before`, ...: before/after in one run.
EXTRA = {f"gateway@{label}": path for label, _, path in
         (item.partition("=") for item in os.environ.get("EXTRA_GATEWAYS", "").split()) if path}
for _name in EXTRA:
    LABELS[_name] = f"partner-gateway, build {_name.split('@', 1)[1]!r}"
PEAK = {}
PORTS = {}
WORK = ""


IDLE_BOUND_KIB = 64 * 1024  # an idle gateway's RSS within 10 s of a burst


def memory_bench(name, proc, auth, path):
    """64 concurrent 8 MiB bodies through the gateway: peak RSS, then RSS 10 s after the burst."""
    data = body(8 * 1024 * 1024)
    before = proc.status_kib("VmRSS")
    statuses = []

    def one():
        headers = {"content-type": "application/json", "authorization": auth}
        statuses.append(post(PORTS[name], path, data, headers)[0])

    threads = [threading.Thread(target=one) for _ in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    hwm = proc.status_kib("VmHWM")
    after0 = proc.status_kib("VmRSS")
    samples = []
    for _ in range(10):
        time.sleep(1)
        samples.append(proc.status_kib("VmRSS"))
    in_flight = 64 * len(data)
    bound = 64 * 1024 * 1024 + 1.2 * in_flight
    print(f"\n### memory: 64 concurrent {len(data) / 2**20:.1f} MiB bodies through {label_of(name)}\n")
    print(f"statuses: {sorted(set(statuses))}")
    if set(statuses) != {200}:
        raise SystemExit("not every body was forwarded (a status other than 200): the figures "
                         "above do not measure 64 bodies in flight")
    print(f"RSS before: {before / 1024:.0f} MiB; peak (VmHWM): {hwm / 1024:.0f} MiB "
          f"(bound 64 MiB + 1.2 × {in_flight / 2**20:.0f} MiB in flight = {bound / 2**20:.0f} MiB)")
    print(f"RSS right after: {after0 / 1024:.0f} MiB; each second after: "
          + " ".join(f"{s / 1024:.0f}" for s in samples) + " MiB")
    back = next((i + 1 for i, s in enumerate(samples) if s < IDLE_BOUND_KIB), None)
    print(f"peak {hwm / 1024:.0f} MiB {'<' if hwm * 1024 < bound else '>='} bound {bound / 2**20:.0f} MiB: "
          f"{'met' if hwm * 1024 < bound else 'NOT met'}; RSS < {IDLE_BOUND_KIB // 1024} MiB within 10 s: "
          + (f"met after {back} s" if back else "NOT met"))


def main():
    global WORK
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true", help="one short round")
    ap.add_argument("--memory", action="store_true", help="only the memory benchmark")
    args = ap.parse_args()
    rounds = int(os.environ.get("ROUNDS", "1" if args.smoke else "3"))
    duration = int(os.environ.get("DURATION", "2" if args.smoke else "10"))
    sizes = os.environ.get("SIZES", "1k 1m").split()
    default = "nginx nginx_lua pingora gateway gateway_nosign " + " ".join(EXTRA)
    targets = os.environ.get("TARGETS", default).split()
    if args.memory:
        targets = os.environ.get("TARGETS", "gateway " + " ".join(EXTRA)).split()
    conns = {"1k": int(os.environ.get("CONNS_1K", "64")), "1m": int(os.environ.get("CONNS_1M", "16"))}
    WORK = tempfile.mkdtemp(prefix="pg-loadbench-")
    for name in ["sink"] + targets:
        PORTS[name] = free_port()

    token = subprocess.run([GATEWAY, "token", "--key", f"{ROOT}/certs/callers-demo.pem", "--sub", "orders-service",
                            "--kid", "callers-demo-1", "--ttl", "1h", "--issuer", "https://auth.ohsoft.example",
                            "--audience", "partner-gateway"],
                           capture_output=True, text=True)
    if token.returncode != 0:
        raise SystemExit(f"cannot mint a caller token: {token.stderr}")
    auth = "Bearer " + token.stdout.strip()
    paths = {"nginx": "/v1/shipments", "nginx_lua": "/v1/shipments", "pingora": "/v1/shipments",
             **{t: "/acme-ship/v1/shipments" for t in targets if t.startswith("gateway")}}
    procs = {}
    try:
        procs = start_targets(targets, PORTS, None)
        if args.memory:
            for name in targets:
                memory_bench(name, procs[name], auth, paths[name])
            return
        files = {}
        for size in sizes:
            files[size] = os.path.join(WORK, f"body-{size}.json")
            with open(files[size], "wb") as f:
                f.write(body({"1k": 1024, "1m": 1024 * 1024}[size]))
        with open(os.path.join(WORK, "post.lua"), "w") as f:
            f.write(WRK_SCRIPT)
        verify_filtering(targets, paths, auth, {s: open(files[s], "rb").read() for s in sizes})
        results = {s: {t: [] for t in targets} for s in sizes}
        tokens = {t: "" for t in targets}
        if "gateway_fresh" in targets:
            tokens["gateway_fresh"] = mint_tokens(int(os.environ.get("DISTINCT_TOKENS", "16000")))
        for t in targets:  # warm-up: connections, pools, caches
            run_wrk(procs[t], PORTS[t], paths[t], files[sizes[0]], 8, 1, auth)
        for r in range(rounds):
            for size in sizes:
                order = targets if r % 2 == 0 else list(reversed(targets))
                for t in order:
                    res = run_wrk(procs[t], PORTS[t], paths[t], files[size], conns[size], duration, auth,
                                  tokens[t])
                    results[size][t].append(res)
                    print(f"round {r + 1} {size} {t}: {res['rps']:,.0f} rps, {res['cpu_us']:.0f} µs CPU/req, "
                          f"p99 {res['p99_ms']:.2f} ms, errors {res['errors']}", flush=True)
        for t in targets:
            PEAK[t] = procs[t].status_kib("VmHWM")
        summarize(results, targets, sizes, rounds, duration, conns)
        for size in sizes:
            for t in targets:
                failed = sum(r["errors"] for r in results[size][t])
                if failed:
                    print(f"WARNING: {label_of(t)} answered {failed} {size} request(s) with an error "
                          "(non-2xx, timeout or connection error): its rate is not comparable")
    finally:
        for p in procs.values():
            p.stop()
        if os.environ.get("KEEP") is None:
            shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
