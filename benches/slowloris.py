#!/usr/bin/env python3
"""Slow-client memory benchmark (not part of the test command).

Opens N connections to a real `partner-gateway serve`, each sending HEAD_KIB KiB of a request head
that never finishes (with --body: a whole head and the first KiB of a 64 KiB body that never
finishes, so each request waits inside the gateway's handler), and reports the gateway's RSS (VmRSS) before, at the peak of the attack and
after the head deadline, its peak RSS (VmHWM), how many connections the gateway closed and the
`partner_gateway_connections_closed_total` counters.

Two gateways run in the same invocation, the same binary with different limits:
  baseline  limits as loose as pingora's own (1 h head deadline, 1 MiB heads, no connection
            limit): what the gateway did before it enforced its own limits;
  limits    the policy defaults (10 s head deadline, 64 KiB heads, 10 000 connections), or what
            --header-timeout-ms / --max-header-bytes / --max-connections say.

Usage: python3 benches/slowloris.py [--bin target/release/partner-gateway] [--connections 1500]
       [--head-kib 60] [--header-timeout-ms 10000] [--body]
Takes about (header timeout + 15 s) per run; needs `ulimit -n` above 2 x connections.
"""
import argparse
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def status(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return round(int(line.split()[1]) / 1024, 1)  # MiB
    return -1


PARTNER = """kind: contractor
purpose: shipping
upstream: http://127.0.0.1:9
routes:
  - path: /v1/shipments
    methods: [POST]
    allow: [order_id]
allowed_callers: [orders-service]
"""


def start(binary, limits):
    listen, admin = free_port(), free_port()
    root = tempfile.mkdtemp(prefix="slowloris-")
    policy = os.path.join(root, "policy")
    os.makedirs(os.path.join(policy, "partners"))
    with open(os.path.join(policy, "gateway.yaml"), "w") as f:
        f.write(
            f"listen: 127.0.0.1:{listen}\nadmin_listen: 127.0.0.1:{admin}\n"
            f"limits: {{ max_body_bytes: 100000, max_depth: 16, upstream_timeout_ms: 1500{limits} }}\n"
            "callers:\n  allow_unauthenticated: true\nsigning: { disabled: true }\n"
        )
    with open(os.path.join(policy, "partners", "ship.yaml"), "w") as f:
        f.write(PARTNER)
    proc = subprocess.Popen(
        [os.path.abspath(binary), "serve", "--policy", policy],
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", listen), timeout=1).close()
            return proc, listen, admin
        except OSError:
            time.sleep(0.05)
    proc.kill()
    sys.exit("the gateway did not start")


def closed_counters(admin):
    text = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics").read().decode()
    return {
        line.split('reason="')[1].split('"')[0]: int(float(line.rsplit(" ", 1)[1]))
        for line in text.splitlines()
        if line.startswith("partner_gateway_connections_closed_total{")
    }


def attack(port, connections, head_kib, body):
    head = b"POST /ship/v1/shipments HTTP/1.1\r\nhost: gw\r\n"
    if body:
        head += b"content-type: application/json\r\ncontent-length: 65536\r\n\r\n"
        head += b'{"order_id":1,"pad":"' + b"a" * 1000
    else:
        filler = b"x-filler: " + b"a" * 1000 + b"\r\n"
        while len(head) + len(filler) <= head_kib * 1024:
            head += filler
    socks = []
    for _ in range(connections):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.setblocking(False)
            socks.append(s)
        except OSError:
            break
    for s in socks:
        try:
            s.send(head)
        except OSError:
            pass
    return socks


def still_open(socks):
    """Connections the gateway neither answered nor closed yet."""
    n = 0
    for s in socks:
        try:
            s.recv(65536)  # an answer (408/431) or end of stream: the gateway let go of it
        except BlockingIOError:
            n += 1
        except OSError:
            pass
    return n


def run(name, binary, limits, args, wait_s):
    proc, port, admin = start(binary, limits)
    try:
        time.sleep(0.5)
        before = status(proc.pid, "VmRSS")
        started = time.time()
        socks = attack(port, args.connections, args.head_kib, args.body)
        time.sleep(2)
        peak_rss = status(proc.pid, "VmRSS")
        open_during = still_open(socks)
        time.sleep(max(0.0, started + wait_s - time.time()))
        after = status(proc.pid, "VmRSS")
        hwm = status(proc.pid, "VmHWM")
        open_after = still_open(socks)
        counters = closed_counters(admin)
        for s in socks:
            s.close()
        print(
            f"{name:9} connections={len(socks)} rss_before={before}MiB rss_during={peak_rss}MiB "
            f"({(peak_rss - before) * 1024 / max(len(socks), 1):.1f} KiB per connection) "
            f"rss_after_{wait_s:.0f}s={after}MiB vmhwm={hwm}MiB open_during={open_during} "
            f"open_after={open_after} closed={counters}"
        )
        return round(hwm - before, 1)
    finally:
        proc.kill()
        proc.wait()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bin", default="target/release/partner-gateway")
    p.add_argument("--connections", type=int, default=1500)
    p.add_argument("--head-kib", type=int, default=60)
    p.add_argument("--header-timeout-ms", type=int, default=10000)
    p.add_argument("--max-header-bytes", type=int, default=65536)
    p.add_argument("--max-connections", type=int, default=10000)
    p.add_argument("--body", action="store_true", help="stall inside the body, not the head")
    args = p.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    wait_s = args.header_timeout_ms / 1000 + 3
    base = run(
        "baseline",
        args.bin,
        ", header_timeout_ms: 3600000, max_header_bytes: 1048576, max_connections: 1000000",
        args,
        wait_s,
    )
    limited = run(
        "limits",
        args.bin,
        f", header_timeout_ms: {args.header_timeout_ms}, max_header_bytes: {args.max_header_bytes}, "
        f"max_connections: {args.max_connections}",
        args,
        wait_s,
    )
    print(f"peak growth: baseline +{base} MiB, limits +{limited} MiB")


if __name__ == "__main__":
    main()
