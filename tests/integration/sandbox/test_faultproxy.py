"""The fault proxy in front of a tiny local upstream that records what it saw."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from sandbox.faultproxy import FaultProxy


class Upstream:
    """An echo server: answers every request with what it received, and keeps a log."""

    def __init__(self) -> None:
        self.seen: list[dict] = []
        log = self.seen

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are two writes

            def _echo(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                record = {
                    "method": self.command,
                    "path": self.path,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": body,
                }
                log.append(record)
                payload = json.dumps(record).encode()
                self.send_response(201 if self.command == "POST" else 200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Request-Id", f"req_{len(log)}")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = _echo

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    yield server
    server.close()


def test_forwards_method_path_query_headers_and_body(upstream: Upstream) -> None:
    headers = {
        "Authorization": "Bearer sk_test_123",
        "Idempotency-Key": "mig-42-import",
        "Stripe-Signature": "t=1,v1=abc",
        "Content-Type": "application/x-www-form-urlencoded",
    }
    with FaultProxy(upstream.url) as proxy, httpx.Client(base_url=proxy.url) as client:
        r = client.post("/v1/customers?expand[]=sources", headers=headers, content="email=a%40b.c")
        assert r.status_code == 201
        assert r.headers["Request-Id"] == "req_1"
        for method in ("GET", "DELETE"):
            assert client.request(method, "/v1/customers/cus_1").status_code == 200
        stats = proxy.stats()
    seen = upstream.seen[0]
    assert seen["method"] == "POST"
    assert seen["path"] == "/v1/customers?expand[]=sources"
    assert seen["body"] == "email=a%40b.c"
    for key, value in headers.items():
        assert seen["headers"][key.lower()] == value
    assert r.json() == seen
    assert [s["method"] for s in upstream.seen] == ["POST", "GET", "DELETE"]
    assert stats["requests"] == stats["forwarded"] == 3


def test_each_fault_happens_at_its_rate_and_is_counted(upstream: Upstream) -> None:
    n = 400
    faults = {"error_rate": 0.1, "reset_rate": 0.1, "slow_rate": 0.1, "slow_seconds": 0.01}
    outcomes = {"500": 0, "reset": 0, "ok": 0}
    with FaultProxy(upstream.url, seed=7, **faults) as proxy:
        with httpx.Client(base_url=proxy.url, timeout=5) as client:
            for i in range(n):
                try:
                    r = client.get(f"/v1/charges/{i}")
                except httpx.TransportError:
                    outcomes["reset"] += 1
                    continue
                if r.status_code == 500:
                    assert r.json()["error"]["type"] == "api_error"
                    outcomes["500"] += 1
                else:
                    outcomes["ok"] += 1
        stats = proxy.stats()
    assert stats["requests"] == n
    assert stats["injected_500"] == outcomes["500"]
    assert stats["reset"] == outcomes["reset"]
    assert stats["forwarded"] == outcomes["ok"] == len(upstream.seen)
    for kind in ("injected_500", "reset", "slow"):
        assert 0.05 * n <= stats[kind] <= 0.15 * n, (kind, stats[kind])


def test_same_seed_same_faults(upstream: Upstream) -> None:
    def run() -> list[int]:
        with (
            FaultProxy(upstream.url, seed=3, error_rate=0.3) as proxy,
            httpx.Client(base_url=proxy.url) as client,
        ):
            return [client.get("/x").status_code for _ in range(30)]

    assert run() == run()


def test_timeout_holds_the_request_past_the_client_timeout(upstream: Upstream) -> None:
    with FaultProxy(upstream.url, timeout_rate=1.0, timeout_seconds=5.0) as proxy:
        with (
            httpx.Client(base_url=proxy.url, timeout=0.3) as client,
            pytest.raises(httpx.ReadTimeout),
        ):
            client.get("/v1/customers")
        assert proxy.stats()["timeout"] == 1
        started = time.monotonic()
    assert time.monotonic() - started < 3.0  # stop() does not wait for the held request
    assert upstream.seen == []


def test_rate_limit_answers_429_like_stripe(upstream: Upstream) -> None:
    with FaultProxy(upstream.url, rate_limit=5) as proxy:
        with httpx.Client(base_url=proxy.url) as client:
            codes = [client.get("/v1/customers").status_code for _ in range(8)]
            limited = client.get("/v1/customers")
        stats = proxy.stats()
    assert codes == [200] * 5 + [429] * 3
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "1"
    assert limited.headers["Stripe-Should-Retry"] == "true"
    assert limited.json()["error"]["type"] == "rate_limit_error"
    assert stats["injected_429"] == 4 and stats["forwarded"] == 5 == len(upstream.seen)


def test_burst_429(upstream: Upstream) -> None:
    with FaultProxy(upstream.url, burst_429=(5, 2)) as proxy, httpx.Client(base_url=proxy.url) as c:
        codes = [c.get("/").status_code for _ in range(10)]
    assert codes == [200, 200, 200, 429, 429] * 2


def test_burst_429_period_refuses_everything_for_a_while(upstream: Upstream) -> None:
    now = [100.0]
    with (
        FaultProxy(upstream.url, clock=lambda: now[0], burst_429_period=(10, 2)) as proxy,
        httpx.Client(base_url=proxy.url) as c,
    ):
        codes = []
        for at in (101.0, 107.9, 108.1, 109.9, 110.1):  # seconds on the proxy's clock
            now[0] = at
            codes.append(c.get("/v1/subscriptions/sub_1").status_code)
        routes = proxy.stats()["routes"]
    assert codes == [200, 200, 429, 429, 200]
    assert routes == {"GET /v1/subscriptions/{id}": 5}  # counted by route, ids folded


def test_error_after_forwards_then_answers_500(upstream: Upstream) -> None:
    with FaultProxy(upstream.url, error_after_rate=1.0) as proxy:
        with httpx.Client(base_url=proxy.url) as client:
            r = client.post("/v1/subscriptions", data={"customer": "cus_1"})
        stats = proxy.stats()
    assert r.status_code == 500
    assert r.json()["error"]["type"] == "api_error"
    assert len(upstream.seen) == 1 and upstream.seen[0]["body"] == "customer=cus_1"
    assert stats["error_after"] == 1 and stats["forwarded"] == 1


def test_http_control_endpoints_reconfigure_at_runtime(upstream: Upstream) -> None:
    with FaultProxy(upstream.url) as proxy, httpx.Client(base_url=proxy.url) as client:
        assert client.get("/a").status_code == 200
        r = client.post("/_proxy/config", json={"error_rate": 1.0})
        assert r.status_code == 200 and r.json()["error_rate"] == 1.0
        assert client.get("/a").status_code == 500
        assert client.post("/_proxy/config", json={"nope": 1}).status_code == 400
        proxy.configure(error_rate=0.0)
        assert client.get("/a").status_code == 200
        stats = client.get("/_proxy/stats").json()
    assert stats["requests"] == 3 and stats["injected_500"] == 1 and stats["forwarded"] == 2


def test_stop_leaves_no_thread_behind(upstream: Upstream) -> None:
    before = {t.ident for t in threading.enumerate()}
    proxy = FaultProxy(upstream.url).start()
    httpx.get(proxy.url + "/")
    proxy.stop()
    assert {t.ident for t in threading.enumerate() if t.name == "faultproxy"} - before == set()
    with pytest.raises(httpx.ConnectError):
        httpx.get(proxy.url + "/", timeout=1)
