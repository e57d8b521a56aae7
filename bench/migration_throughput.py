"""Migration throughput against a legacy budget of B requests/second.

For each scenario (clean, then 1 % of legacy calls failing with 500): start a fresh
sandbox (localstripe + newbilling), seed ``--users`` users straight into localstripe
(timed separately: seeding is not migration), put ``sandbox.faultproxy`` with
``rate_limit=B`` (and the scenario's faults) in front of localstripe, sync the
inventory, then migrate every user in one cohort through the real Celery task code on
an **embedded worker** (``--threads``, default 2; in-memory broker, SQLite: the
``twinbill demo`` shape; all threads share the process's legacy limiter) set to 0.95 x B
(``TWINBILL_LEGACY_RATE_LIMIT``).

Reports users/s, legacy calls per user, utilisation = achieved legacy req/s / B (requests
the proxy accepted within its budget, per second of migration), 429s seen and users that
ended ``failed``. Target: utilisation >= 0.90 with zero failed users. Prints numbers,
asserts nothing.

    .venv/bin/python bench/migration_throughput.py --users 500 --budget 20
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


@dataclass
class Outcome:
    scenario: str
    users: int
    seed_seconds: float
    seconds: float
    done: int
    deferred: int
    failed: int
    legacy_calls: int  # client side: slots taken from the limiter
    accepted: int  # proxy side: requests that got past the server's budget
    got_429: int
    got_500: int
    budget: float
    failures: dict[str, int]

    @property
    def users_per_second(self) -> float:
        return self.users / self.seconds if self.seconds else 0.0

    @property
    def calls_per_user(self) -> float:
        return self.legacy_calls / self.users if self.users else 0.0

    @property
    def achieved(self) -> float:
        return self.accepted / self.seconds if self.seconds else 0.0

    @property
    def utilisation(self) -> float:
        return self.achieved / self.budget


def run_scenario(
    name: str,
    *,
    users: int,
    budget: float,
    faults: dict[str, Any],
    workdir: Path,
    seed: int,
    threads: int = 2,
) -> Outcome:
    from admin.bootstrap import bootstrap
    from core import dbschema
    from core.queue import embedded_worker
    from core.settings import load_settings
    from migration import cohorts, services
    from multiplexer.inventory import sync_customers
    from sandbox.faultproxy import FaultProxy
    from sandbox.legacy.launcher import make_client
    from sandbox.legacy.population import seed as seed_population
    from sandbox.stack import Stack

    workdir.mkdir(parents=True, exist_ok=True)
    with Stack(workdir / "sandbox") as ep, FaultProxy(ep.legacy_url, seed=seed) as proxy:
        t0 = time.perf_counter()
        seed_population(make_client(ep.legacy_url, ep.legacy_api_key), users, seed)
        seed_seconds = time.perf_counter() - t0

        settings = load_settings(
            database_url=f"sqlite:///{workdir / 'twinbill.db'}",
            redis_url=None,
            legacy_backend="localstripe",
            legacy_api_base=proxy.url,
            legacy_api_key=ep.legacy_api_key,
            new_base_url=ep.new_url,
            new_api_token=ep.new_api_token,
            legacy_rate_limit=0.95 * budget,
            new_rate_limit=500,
        )
        dbschema.upgrade(settings.database_url)
        ctx = bootstrap(settings)
        sync_customers(ctx.sessions, ctx.legacy.iter_customers(), actor="bench", cache=ctx.cache)
        deps = ctx.saga
        with ctx.sessions() as session:
            everyone = [c.user_id for c in cohorts.candidates(session)]
        cohorts.create(ctx.sessions, name, everyone, actor="bench", halt_at_bp=10_000)

        proxy.configure(rate_limit=budget, **faults)
        time.sleep(1.1)  # let the sync's requests leave the proxy's 1-s window
        proxy.reset_stats()
        limiter = ctx.limiters["legacy"]
        calls_before = limiter.stats()["acquired"]
        with embedded_worker(ctx.celery, concurrency=threads):
            started = time.perf_counter()
            services.start_cohort(deps, name, ctx.enqueue_migration, actor="bench")
            last = -1
            while True:
                with ctx.sessions() as session:
                    p = cohorts.progress(session, name)
                if p.settled:
                    break
                finished = p.finished + p.by_status.get("deferred", 0)
                if finished // 50 != last:
                    last = finished // 50
                    print(f"  {name}: {finished}/{p.total} settled", file=sys.stderr, flush=True)
                time.sleep(0.25)
            seconds = time.perf_counter() - started
        stats = proxy.stats()
        legacy_calls = limiter.stats()["acquired"] - calls_before
        ctx.close()
    return Outcome(
        name,
        len(everyone),
        seed_seconds,
        seconds,
        p.by_status.get("done", 0),
        p.by_status.get("deferred", 0),
        p.by_status.get("failed", 0),
        legacy_calls,
        stats["requests"] - stats["injected_429"],
        stats["injected_429"],
        stats["injected_500"],
        budget,
        p.failures_by_kind,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--budget", type=float, default=20.0, help="B, legacy requests/s")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--only", choices=("clean", "errors"), default=None)
    parser.add_argument("--threads", type=int, default=2, help="worker threads sharing B")
    args = parser.parse_args(argv)
    os.environ.pop("TWINBILL_REDIS_URL", None)

    scenarios = [("clean", {}), ("errors", {"error_rate": 0.01})]
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="twinbill-bench-") as tmp:
        for name, faults in scenarios:
            if args.only and name != args.only:
                continue
            print(f"scenario {name}: seeding {args.users} users ...", file=sys.stderr, flush=True)
            outcomes.append(
                run_scenario(
                    name,
                    users=args.users,
                    budget=args.budget,
                    faults=faults,
                    workdir=Path(tmp) / name,
                    seed=args.seed,
                    threads=args.threads,
                )
            )
            print(f"  {name}: {outcomes[-1]}", file=sys.stderr, flush=True)  # partial results

    print(
        f"\nmigration throughput — B = {args.budget:g} legacy req/s, limiter 0.95·B, "
        f"{args.threads} embedded worker threads (in-memory broker, SQLite)\n"
    )
    header = (
        f"{'scenario':<8} {'users':>5} {'seed s':>7} {'migr s':>7} {'users/s':>7} "
        f"{'calls/user':>10} {'legacy r/s':>10} {'util':>5} {'429s':>5} {'500s':>5} "
        f"{'done':>5} {'defer':>5} {'failed':>6}"
    )
    print(header)
    print("-" * len(header))
    for o in outcomes:
        print(
            f"{o.scenario:<8} {o.users:>5} {o.seed_seconds:>7.1f} {o.seconds:>7.1f} "
            f"{o.users_per_second:>7.2f} {o.calls_per_user:>10.1f} {o.achieved:>10.2f} "
            f"{o.utilisation:>5.2f} {o.got_429:>5} {o.got_500:>5} {o.done:>5} "
            f"{o.deferred:>5} {o.failed:>6}"
        )
    print("\ntarget: utilisation >= 0.90 with zero failed users")
    for o in outcomes:
        verdict = "meets" if o.utilisation >= 0.90 and o.failed == 0 else "misses"
        extra = f" (failures by kind: {o.failures})" if o.failed else ""
        print(f"  {o.scenario}: {verdict} the target{extra}")


if __name__ == "__main__":
    main()
