"""How much of a server-side budget B does the global limiter actually use?

Starts ``sandbox.faultproxy`` with ``rate_limit=B`` in front of a tiny echo
upstream, then hammers it through ``core.ratelimit.RateLimiter(rate=B)`` from N
threads (in process), and from 2 processes x N/2 threads sharing Redis. Prints
utilisation = achieved forwarded req/s / B and the number of 429s received. For
contrast, ``--compare-limits`` runs the same load through the ``limits``
library's moving window, which is correct per 1-s window but bursty.

Baseline for bench/migration_throughput.py. Prints numbers, asserts nothing.

    .venv/bin/python bench/ratelimit_utilisation.py --budget 20 --threads 8 --seconds 5 \
        --redis-url redis://127.0.0.1:6379/15 --compare-limits
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.ratelimit import RateLimiter  # noqa: E402
from sandbox.faultproxy import FaultProxy  # noqa: E402


class _Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        body = b'{"object": "customer"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def hammer(
    proxy_url: str,
    acquire: Callable[[], None],
    on_429: Callable[[float], None],
    on_ok: Callable[[], None],
    threads: int,
    seconds: float,
    start_at: float,
) -> dict[str, int]:
    """Run `threads` workers until start_at + seconds; count outcomes."""
    counts = {"ok": 0, "429": 0, "other": 0}
    lock = threading.Lock()
    end = start_at + seconds

    def worker() -> None:
        with httpx.Client(base_url=proxy_url, timeout=10) as client:
            time.sleep(max(0.0, start_at - time.time()))
            while True:
                acquire()
                if time.time() >= end:
                    return
                r = client.get("/v1/customers/cus_1")
                key = "ok" if r.status_code == 200 else "429" if r.status_code == 429 else "other"
                if key == "429":
                    on_429(float(r.headers.get("Retry-After", "1")))
                elif key == "ok":
                    on_ok()
                with lock:
                    counts[key] += 1

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return counts


def gcra_worker(
    proxy_url: str,
    name: str,
    rate: float,
    storage: str | None,
    threads: int,
    seconds: float,
    start_at: float,
) -> dict[str, object]:
    limiter = RateLimiter(name, rate, storage)
    counts = hammer(
        proxy_url,
        lambda: limiter.acquire(),
        limiter.penalise,
        limiter.reward,
        threads,
        seconds,
        start_at,
    )
    return {**counts, "effective_rate": limiter.effective_rate}


def limits_worker(
    proxy_url: str, rate: float, threads: int, seconds: float, start_at: float
) -> dict[str, object]:
    from limits import RateLimitItemPerSecond, storage, strategies

    window = strategies.MovingWindowRateLimiter(storage.storage_from_string("memory://"))
    item = RateLimitItemPerSecond(int(rate))

    def acquire() -> None:
        while not window.hit(item, "legacy"):
            time.sleep(0.005)

    return dict(
        hammer(proxy_url, acquire, lambda _s: None, lambda: None, threads, seconds, start_at)
    )


def run_scenario(
    label: str,
    upstream: str,
    budget: float,
    seconds: float,
    run: Callable[[str, float], list[dict[str, object]]],
) -> dict[str, object]:
    with FaultProxy(upstream, rate_limit=budget) as proxy:
        start_at = time.time() + 1.0
        results = run(proxy.url, start_at)
        stats = proxy.stats()
    forwarded_rate = stats["forwarded"] / seconds
    return {
        "scenario": label,
        "forwarded": stats["forwarded"],
        "req_per_s": round(forwarded_rate, 2),
        "utilisation": round(forwarded_rate / budget, 3),
        # between the first and the last forwarded request: a worker process that starts
        # late (interpreter start-up on a busy machine) does not count as unused budget
        "steady_utilisation": round(stats["forwarded_per_second"] / budget, 3),
        "429s": stats["injected_429"],
        "client_effective_rate": [r.get("effective_rate") for r in results],
    }


def two_processes(
    url: str, at: float, rate: float, redis_url: str, threads: int, seconds: float
) -> list[dict[str, object]]:
    """Two interpreters, sharing nothing but Redis, split the threads between them."""
    spec = {
        "proxy_url": url,
        "name": f"bench-{uuid.uuid4().hex[:6]}",
        "rate": rate,
        "storage": redis_url,
        "threads": threads,
        "seconds": seconds,
        "start_at": at + 1.0,  # interpreter start-up
    }
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--worker", json.dumps(spec)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    return [json.loads(p.communicate()[0]) for p in procs]


def scenarios(args: argparse.Namespace, upstream: str, fraction: float) -> list[dict[str, object]]:
    rate, budget, n, secs = args.budget * fraction, args.budget, args.threads, args.seconds
    half = max(1, n // 2)
    label = f"{fraction:.2f}B"
    rows = [
        run_scenario(
            f"{label} in-process GCRA, {n} threads",
            upstream,
            budget,
            secs,
            lambda url, at: [
                gcra_worker(url, f"bench-{uuid.uuid4().hex[:6]}", rate, None, n, secs, at)
            ],
        )
    ]
    if args.redis_url:
        rows.append(
            run_scenario(
                f"{label} Redis GCRA, 2 processes x {half} threads",
                upstream,
                budget,
                secs,
                lambda url, at: two_processes(url, at, rate, args.redis_url, half, secs),
            )
        )
    if args.compare_limits:
        rows.append(
            run_scenario(
                f"{label} limits MovingWindow (no adaptation), {n} threads",
                upstream,
                budget,
                secs,
                lambda url, at: [limits_worker(url, rate, n, secs, at)],
            )
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=20.0, help="proxy budget B, req/s")
    parser.add_argument(
        "--client-rates", default="1.0,0.95", help="limiter rates to try, as fractions of B"
    )
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--redis-url", default=os.environ.get("TWINBILL_REDIS_URL"))
    parser.add_argument("--compare-limits", action="store_true")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # JSON args of one Redis process
    args = parser.parse_args()

    if args.worker:
        print(json.dumps(gcra_worker(**json.loads(args.worker))))
        return

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    upstream = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        rows = [
            row
            for fraction in (float(f) for f in args.client_rates.split(","))
            for row in scenarios(args, upstream, fraction)
        ]
    finally:
        server.shutdown()
        server.server_close()
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"budget B = {args.budget} req/s, {args.seconds}s per scenario")
    for row in rows:
        print(
            f"  {row['scenario']:<52} {row['req_per_s']:>6} req/s  "
            f"utilisation {row['utilisation']:.3f} (steady {row['steady_utilisation']:.3f})  "
            f"429s {row['429s']}"
        )


if __name__ == "__main__":
    main()
