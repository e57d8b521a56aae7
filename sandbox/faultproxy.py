"""A reverse proxy that misbehaves on purpose, in front of localstripe or newbilling.

The migration must survive what real billing APIs do under load: 429 bursts,
500s, 500s *after* the write happened, reset connections, timeouts, slow
answers. Neither localstripe nor newbilling does these on cue. This proxy does,
deterministically for a given ``seed``, and counts every fault so a test can
assert the client saw what was injected (and every request per route, ``route_of``, so
a test or bench counts calls at the server side).

It is aiohttp (server and client) on its own event loop in a daemon thread, so
a test can use it as a context manager. A subprocess user runs
``python -m sandbox.faultproxy UPSTREAM`` and drives it with
``POST /_proxy/config`` and ``GET /_proxy/stats``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import random
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any

import aiohttp
from aiohttp import web
from yarl import URL

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)


@dataclass
class Faults:
    """What to inject. Probabilities are per request and add up to at most 1."""

    rate_limit: float | None = None  # server-side budget, requests per any 1-s window
    error_rate: float = 0.0  # 500, not forwarded
    error_after_rate: float = 0.0  # forwarded, then 500: the write happened
    reset_rate: float = 0.0  # connection closed abruptly (RST), not forwarded
    timeout_rate: float = 0.0  # hold the request `timeout_seconds`, then reset
    slow_rate: float = 0.0  # wait `slow_seconds`, then forward
    slow_seconds: float = 0.5
    timeout_seconds: float = 30.0
    # (every, length): of each `every` consecutive requests, the last `length` get 429.
    burst_429: tuple[int, int] | None = None
    # (every, length) in seconds since the stats were reset: every request in the last
    # `length` seconds of each `every` seconds gets 429 (a server shedding load for a while)
    burst_429_period: tuple[float, float] | None = None


#: path segments after a resource that are actions, not ids (``/v1/invoices/upcoming``)
_ACTIONS = frozenset({"upcoming", "create_preview", "search", "report_payment"})


def route_of(method: str, path: str) -> str:
    """``GET /v1/customers/cus_1/balance_transactions`` -> ``GET /v1/customers/{id}/...``:
    requests counted per route, so a test can tell a list from a retrieve."""
    parts = path.strip("/").split("/")
    named = ["{id}" if i in (2, 4) and p not in _ACTIONS else p for i, p in enumerate(parts)]
    return f"{method.upper()} /{'/'.join(named)}"


class _Counters:
    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.counts: collections.Counter[str] = collections.Counter()
        self.routes: collections.Counter[str] = collections.Counter()  # every request
        self.first_forward: float | None = None
        self.last_forward: float | None = None
        self.started = clock()

    def forwarded(self) -> None:
        now = self.clock()
        self.counts["forwarded"] += 1
        self.first_forward = self.first_forward or now
        self.last_forward = now


class FaultProxy:
    """``with FaultProxy(url, error_rate=0.1) as proxy: client(base_url=proxy.url)``."""

    def __init__(
        self,
        upstream_url: str,
        *,
        seed: int = 0,
        clock: Callable[[], float] = time.monotonic,
        **faults: Any,
    ) -> None:
        self.upstream = upstream_url.rstrip("/")
        self._clock = clock
        self.faults = Faults()
        self.configure(**faults)
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._counters = _Counters(clock)
        self._window: collections.deque[float] = collections.deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def configure(self, **faults: Any) -> None:
        """Change faults at runtime; unknown names are an error, not silently ignored."""
        known = {f.name for f in fields(Faults)}
        unknown = set(faults) - known
        if unknown:
            raise ValueError(f"unknown fault setting(s): {sorted(unknown)}")
        if faults.get("burst_429") is not None:
            every, length = faults["burst_429"]
            faults["burst_429"] = (int(every), int(length))
        if faults.get("burst_429_period") is not None:
            every_s, length_s = faults["burst_429_period"]
            faults["burst_429_period"] = (float(every_s), float(length_s))
        for name, value in faults.items():
            setattr(self.faults, name, value)
        f = self.faults
        total = f.error_rate + f.error_after_rate + f.reset_rate + f.timeout_rate + f.slow_rate
        if total > 1.0:
            raise ValueError(f"fault probabilities add up to {total} > 1")

    def stats(self) -> dict[str, Any]:
        with self._lock:
            c = self._counters
            span = (c.last_forward or 0.0) - (c.first_forward or 0.0)
            out: dict[str, Any] = {
                key: c.counts[key]
                for key in (
                    "requests",
                    "forwarded",
                    "injected_429",
                    "injected_500",
                    "error_after",
                    "reset",
                    "timeout",
                    "slow",
                    "upstream_error",
                )
            }
            out["elapsed"] = self._clock() - c.started
            # forwarded-1 intervals between the first and the last forwarded request
            out["forwarded_per_second"] = (c.counts["forwarded"] - 1) / span if span > 0 else 0.0
            out["routes"] = dict(c.routes)
            out["config"] = asdict(self.faults)
            return out

    def reset_stats(self) -> None:
        with self._lock:
            self._counters = _Counters(self._clock)

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> FaultProxy:
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._serve())
            except BaseException as exc:  # noqa: BLE001 - reported to start()
                errors.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._shutdown())
            loop.close()

        self._thread = threading.Thread(target=run, name="faultproxy", daemon=True)
        self._thread.start()
        ready.wait(10)
        if errors:
            raise errors[0]
        return self

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(15)
        self._loop = self._thread = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _serve(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/_proxy/config", self._control_config)
        app.router.add_get("/_proxy/stats", self._control_stats)
        app.router.add_post("/_proxy/reset", self._control_reset)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._session = aiohttp.ClientSession(
            auto_decompress=False, timeout=aiohttp.ClientTimeout(total=120)
        )
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def _shutdown(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    # -- control endpoints -------------------------------------------------------------

    async def _control_config(self, request: web.Request) -> web.Response:
        try:
            self.configure(**(await request.json()))
        except (ValueError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(asdict(self.faults))

    async def _control_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    async def _control_reset(self, request: web.Request) -> web.Response:
        self.reset_stats()
        return web.json_response({"ok": True})

    # -- the proxy ---------------------------------------------------------------------

    def _decide(self, route: str) -> str:
        """Pick this request's fate under the lock, so the sequence depends only on seed."""
        f = self.faults
        with self._lock:
            c = self._counters
            index = c.counts["requests"]
            c.counts["requests"] += 1
            c.routes[route] += 1
            now = self._clock()
            if f.burst_429_period is not None:
                every, length = f.burst_429_period
                if every > 0 and (now - c.started) % every >= every - length:
                    c.counts["injected_429"] += 1
                    return "429"
            if f.rate_limit is not None:
                while self._window and self._window[0] <= now - 1.0:
                    self._window.popleft()
                if len(self._window) >= max(1, int(f.rate_limit)):
                    c.counts["injected_429"] += 1
                    return "429"
                self._window.append(now)
            if f.burst_429 is not None:
                every, length = f.burst_429
                if every > 0 and index % every >= every - length:
                    c.counts["injected_429"] += 1
                    return "429"
            draw = self._rng.random()
            for fate, p in (
                ("500", f.error_rate),
                ("error_after", f.error_after_rate),
                ("reset", f.reset_rate),
                ("timeout", f.timeout_rate),
                ("slow", f.slow_rate),
            ):
                if draw < p:
                    c.counts["injected_500" if fate == "500" else fate] += 1
                    return fate
                draw -= p
            return "forward"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        fate = self._decide(route_of(request.method, request.path))
        if fate == "429":
            return web.json_response(
                {
                    "error": {
                        "type": "rate_limit_error",
                        "message": "Too many requests (faultproxy).",
                    }
                },
                status=429,
                headers={"Retry-After": "1", "Stripe-Should-Retry": "true"},
            )
        if fate == "500":
            return _api_error("injected before forwarding")
        if fate == "reset":
            return _reset(request)
        if fate == "timeout":
            await asyncio.sleep(self.faults.timeout_seconds)
            return _reset(request)
        if fate == "slow":
            await asyncio.sleep(self.faults.slow_seconds)
        response = await self._forward(request)
        if fate == "error_after":
            return _api_error("injected after forwarding: the upstream applied the request")
        return response

    async def _forward(self, request: web.Request) -> web.Response:
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        body = await request.read()
        try:
            async with self._session.request(
                request.method,
                URL(self.upstream + request.raw_path, encoded=True),  # bytes as the client sent
                headers=headers,
                data=body if body else None,
                allow_redirects=False,
            ) as upstream:
                payload = await upstream.read()
                out = [(k, v) for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP]
                status = upstream.status
        except (TimeoutError, aiohttp.ClientError) as exc:
            with self._lock:
                self._counters.counts["upstream_error"] += 1
            return web.json_response(
                {"error": {"type": "api_error", "message": f"faultproxy: upstream failed: {exc}"}},
                status=502,
            )
        with self._lock:
            self._counters.forwarded()
        response = web.Response(status=status, body=payload)
        for key, value in out:
            response.headers.add(key, value)
        return response


def _api_error(message: str) -> web.Response:
    return web.json_response({"error": {"type": "api_error", "message": message}}, status=500)


def _reset(request: web.Request) -> web.Response:
    """Close with RST (SO_LINGER 0), like a crashed load balancer; the client gets no reply."""
    transport = request.transport
    if transport is not None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    return web.Response(status=499)  # never reaches the client


def main(argv: list[str] | None = None) -> None:
    """``python -m sandbox.faultproxy UPSTREAM [--rate-limit N] ...``: prints the URL, runs."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("upstream")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--config", default="{}", help="JSON object of Faults fields")
    parser.add_argument("--rate-limit", type=float, default=None)
    args = parser.parse_args(argv)
    faults = json.loads(args.config)
    if args.rate_limit is not None:
        faults["rate_limit"] = args.rate_limit
    with FaultProxy(args.upstream, seed=args.seed, **faults) as proxy:
        print(proxy.url, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
