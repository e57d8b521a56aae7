"""What does routing through the facade add to a billing call?

* ``BillingMux.list_subscriptions`` vs calling the backend directly, both against
  an in-process stub backend (same canned answer), so the difference is routing
  alone: a session from the pool, the cached route lookup, picking the backend;
* the cached route lookup alone (``routing.lookup``), from the in-process LRU and
  from Redis;
* one localstripe round trip (``list_subscriptions`` on the real legacy backend)
  as the denominator.

Targets (issue 3): facade overhead < 5% of a localstripe round trip; lookup p99
< 50 µs from the LRU and < 1 ms from Redis. Prints p50/p99 and the ratios,
asserts nothing.

    .venv/bin/python bench/routing_overhead.py --calls 20000 \
        --redis-url redis://127.0.0.1:6379/15 --localstripe-calls 300
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core import dbschema  # noqa: E402
from core.canonical import (  # noqa: E402
    Interval,
    Subscription,
    SubscriptionItem,
    SubscriptionStatus,
)
from core.db import make_engine, make_sessionmaker, transaction  # noqa: E402
from multiplexer import routing  # noqa: E402
from multiplexer.backends.base import UserRef  # noqa: E402
from multiplexer.cache import LocalRouteCache, RedisRouteCache, RouteCache  # noqa: E402
from multiplexer.facade import BillingMux  # noqa: E402

USER = "u_bench"


class StubBackend:
    """Answers ``list_subscriptions`` with the same canned list, no I/O."""

    def __init__(self) -> None:
        now = datetime.now(UTC).replace(microsecond=0)
        self.answer = [
            Subscription(
                id="sub_bench",
                currency="EUR",
                status=SubscriptionStatus.ACTIVE,
                created_at=now,
                current_period_start=now,
                current_period_end=now + timedelta(days=30),
                items=(
                    SubscriptionItem(
                        id="si_bench",
                        plan_code="plan_basic_monthly_eur",
                        unit_amount=990,
                        interval=Interval.MONTH,
                    ),
                ),  # fmt: skip
            )
        ]

    def list_subscriptions(self, ref: UserRef) -> list[Subscription]:
        return self.answer


def timed(fn: Callable[[], Any], calls: int, warmup: int = 200) -> list[float]:
    """Per-call latency in microseconds."""
    for _ in range(min(warmup, calls)):
        fn()
    out = []
    clock = time.perf_counter_ns
    for _ in range(calls):
        t0 = clock()
        fn()
        out.append((clock() - t0) / 1000)
    return out


def pct(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def row(name: str, samples: list[float]) -> dict[str, float]:
    stats = {"p50": pct(samples, 50), "p99": pct(samples, 99), "mean": statistics.fmean(samples)}
    print(f"  {name:<52} p50 {stats['p50']:>9.1f} µs   p99 {stats['p99']:>9.1f} µs")
    return stats


def routing_world(db_url: str, cache: RouteCache) -> tuple[BillingMux, StubBackend, Any]:
    engine = make_engine(db_url)
    sessions = make_sessionmaker(engine)
    with transaction(sessions) as s:
        if s.get(routing.Route, USER) is None:
            routing.create_route(
                s, USER, system="legacy", actor="bench", reason="bench",
                legacy_customer_id="cus_bench", currency="EUR",
            )  # fmt: skip
    stub = StubBackend()
    mux = BillingMux(sessions, cache, {"legacy": stub, "new": stub}, max_amount_major=1_000_000)
    return mux, stub, sessions


def bench_in_process(db_url: str, calls: int, redis_url: str | None) -> dict[str, dict]:
    results: dict[str, dict] = {}
    ref = UserRef(USER, "cus_bench")
    mux, stub, sessions = routing_world(db_url, LocalRouteCache())
    results["direct"] = row(
        "backend called directly (stub)", timed(lambda: stub.list_subscriptions(ref), calls)
    )
    results["facade_lru"] = row(
        "BillingMux.list_subscriptions (stub, LRU)",
        timed(lambda: mux.list_subscriptions(USER), calls),
    )
    lru = mux._cache  # noqa: SLF001 - the facade's own cache, already warm
    with sessions() as s:
        results["lookup_lru"] = row(
            "routing.lookup from the in-process LRU",
            timed(lambda: routing.lookup(s, lru, USER), calls),
        )
    if redis_url:
        import redis

        client = redis.Redis.from_url(redis_url)
        try:
            client.ping()
        except redis.RedisError as exc:
            print(f"  (Redis at {redis_url} unreachable: {exc}; skipping the Redis rows)")
            return results
        cache = RedisRouteCache(client)
        rmux, _, _ = routing_world(db_url, cache)
        try:
            results["facade_redis"] = row(
                "BillingMux.list_subscriptions (stub, Redis)",
                timed(lambda: rmux.list_subscriptions(USER), calls),
            )
            with sessions() as s:
                results["lookup_redis"] = row(
                    "routing.lookup from Redis",
                    timed(lambda: routing.lookup(s, cache, USER), calls),
                )
        finally:
            cache.invalidate(USER)
            client.close()
    return results  # fmt: skip


def bench_localstripe(workdir: Path, calls: int) -> dict[str, float]:
    from core.settings import load_settings
    from multiplexer.bootstrap import build
    from sandbox.legacy.launcher import make_client
    from sandbox.legacy.population import seed
    from sandbox.stack import Stack

    with Stack(workdir / "sandbox") as ep:
        url = f"sqlite:///{workdir / 'ls.db'}"
        dbschema.upgrade(url)
        env = {k.removeprefix("TWINBILL_").lower(): v for k, v in ep.env().items()}
        # a budget far above the call rate: the limiter must not add waiting to the round trip
        ctx = build(load_settings(database_url=url, legacy_rate_limit=1_000_000, **env))
        try:
            user = seed(make_client(ep.legacy_url, ep.legacy_api_key), 1, 7)[0]
            ref = UserRef(user.app_user_id, user.customer_id)
            samples = timed(lambda: ctx.legacy.list_subscriptions(ref), calls, warmup=20)
            return row("localstripe round trip (legacy list_subscriptions)", samples)
        finally:
            ctx.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--localstripe-calls", type=int, default=300)
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("TWINBILL_TEST_REDIS_URL", "redis://127.0.0.1:6379/15"),
        help="Redis for the Redis rows ('' to skip)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        db_url = f"sqlite:///{workdir / 'bench.db'}"
        dbschema.upgrade(db_url)
        print(f"in process, {args.calls} calls each:")
        r = bench_in_process(db_url, args.calls, args.redis_url or None)
        print(f"localstripe, {args.localstripe_calls} calls:")
        ls = bench_localstripe(workdir, args.localstripe_calls)

    over50 = r["facade_lru"]["p50"] - r["direct"]["p50"]
    over99 = r["facade_lru"]["p99"] - r["direct"]["p99"]
    print("\nratios (target in brackets; < 1.0 of the target is within it):")
    print(f"  facade overhead p50: {over50:.1f} µs = {over50 / ls['p50']:.2%} of a localstripe "
          f"round trip p50 ({ls['p50']:.0f} µs)   [< 5%]")  # fmt: skip
    print(f"  facade overhead p99: {over99:.1f} µs = {over99 / ls['p99']:.2%} of a localstripe "
          f"round trip p99 ({ls['p99']:.0f} µs)")  # fmt: skip
    print(f"  LRU lookup p99 / 50 µs   = {r['lookup_lru']['p99'] / 50:.3f}")
    if "lookup_redis" in r:
        print(f"  Redis lookup p99 / 1 ms  = {r['lookup_redis']['p99'] / 1000:.3f}")
        over_r = r["facade_redis"]["p50"] - r["direct"]["p50"]
        print(f"  facade overhead p50 with the Redis cache: {over_r:.1f} µs = "
              f"{over_r / ls['p50']:.2%} of a localstripe round trip")  # fmt: skip


if __name__ == "__main__":
    main()
