"""Liveness and readiness of ``twinbill serve`` (and the probes of every role).

``/healthz``: the process answers (no dependency is touched — a database outage must
not get every pod restarted). ``/readyz``: this process can do its work now — the
database answers, Redis answers (when configured), and both billing systems answer
HTTP at all (any status below 500: a 401 from Stripe's API still proves the network
path). Each check has a short timeout; the answer names what failed.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import sqlalchemy as sa

from multiplexer.bootstrap import MuxContext

TIMEOUT = 2.0
STRIPE_API = "https://api.stripe.com"


def _check_db(root: MuxContext) -> None:
    with root.engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))


def _check_redis(root: MuxContext) -> None:
    import redis

    client = redis.Redis.from_url(
        root.settings.redis_url or "", socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT
    )
    try:
        client.ping()
    finally:
        client.close()


def _check_http(base: str, path: str = "/") -> None:
    answer = httpx.get(base.rstrip("/") + path, timeout=TIMEOUT)
    if answer.status_code >= 500:
        raise RuntimeError(f"HTTP {answer.status_code}")


def readiness(root: MuxContext) -> tuple[bool, dict[str, Any]]:
    settings = root.settings
    checks: dict[str, Any] = {"database": lambda: _check_db(root)}
    if settings.redis_url:
        checks["redis"] = lambda: _check_redis(root)
    checks["legacy"] = lambda: _check_http(settings.legacy_api_base or STRIPE_API)
    if settings.new_base_url:
        checks["new"] = lambda: _check_http(settings.new_base_url or "", "/healthz")
    results: dict[str, Any] = {}
    for name, check in checks.items():
        started = time.perf_counter()
        try:
            check()
        except Exception as exc:  # noqa: BLE001 - every failure is an answer, not a crash
            results[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:200]}
        else:
            results[name] = {"ok": True, "ms": round((time.perf_counter() - started) * 1000)}
    if not settings.new_base_url:
        results["new"] = {"ok": False, "error": "TWINBILL_NEW_BASE_URL is not set"}
    return all(r["ok"] for r in results.values()), results
