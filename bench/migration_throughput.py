"""Migration throughput against a legacy budget of B requests/second.

For each scenario — ``clean``, ``errors`` (1 % of legacy calls answered 500) and
``burst429`` (every legacy request is answered 429 for 2 s of every 30 s) —
start a fresh sandbox (localstripe + newbilling), seed ``--users`` users straight into
localstripe (timed separately: seeding is not migration), put ``sandbox.faultproxy`` with
``rate_limit=B`` and the scenario's faults in front of localstripe, sync the inventory,
then migrate everyone in one cohort through the real Celery task code, with twinbill's
legacy limiter set to ``--limiter-share`` x B (``TWINBILL_LEGACY_RATE_LIMIT``):

* on an **embedded worker** (``--threads``, in-memory broker, SQLite; all threads share
  the process's limiter), and, with ``--processes N``, also on N ``twinbill worker``
  processes of ``--threads`` threads each (Redis broker and one Redis limiter shared by
  every process, PostgreSQL; ``--redis-url``, default db 3);
* on the **per-user** read path, and with ``--bulk`` also with the bulk snapshot reads
  and the event-based re-check turned on (``TWINBILL_BULK_READS=on``,
  ``TWINBILL_EVENT_RECHECK=auto``), in the same run, with the ratio bulk / per-user.

Prints per run: users/s; legacy calls per user amortized over the cohort, counted at
the proxy (everything the server received: retries, 429s and the cohort's shared reads
included); utilisation = legacy requests the proxy accepted per second of migration / B
(and the same of the limiter's rate); the share of thread time spent waiting for a
legacy slot; failed users; and the projected time for 600,000 users at Stripe's
100 req/s = 600000 x calls/user / (100 x utilisation). ``--routes`` adds the calls per
user of each legacy route, and every run prints its busiest route with the bound Stripe's
per-endpoint limit (25 req/s) puts on users/s. ``BENCH_PROXY_PROCESS=1`` runs the fault
proxy in its own process (its arrival times then do not wait for the bench's GIL). Prints
numbers, asserts nothing.

    .venv/bin/python bench/migration_throughput.py --users 500 --budget 20 --threads 3 \\
        --bulk --processes 2
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from throughput_run import Outcome, known_bulk_settings, run_scenario  # noqa: E402

PROJECT_USERS, LIVE_LIMIT = 600_000, 100.0
#: Stripe's default limit per endpoint (each named API operation), live mode
ENDPOINT_LIMIT = 25.0
SCENARIOS = {
    "clean": {},
    "errors": {"error_rate": 0.01},
    "burst429": {"burst_429_period": (30.0, 2.0)},
    # every legacy request answered 200 ms late: real Stripe's round trips, which a
    # local double hides (a read with one request in flight is bound by them, not by B)
    "slow": {"slow_rate": 1.0, "slow_seconds": 0.2},
}


def _row(o: Outcome) -> str:
    wait = "-" if o.wait_share is None else f"{o.wait_share:.2f}"
    return (
        f"{o.scenario:<8} {o.path:<8} {o.shape:<11} {o.users:>5} {o.seconds:>7.1f} "
        f"{o.users_per_second:>7.2f} {o.calls_per_user:>10.2f} {o.achieved:>8.2f} "
        f"{o.utilisation:>5.2f} {o.of_limiter:>6.2f} {wait:>5} {o.got_429:>5} {o.got_500:>5} "
        f"{o.done:>5} {o.deferred:>5} {o.failed:>6} "
        f"{o.projected_hours(PROJECT_USERS, LIVE_LIMIT):>8.1f} h"
    )


def report(outcomes: list[Outcome], args: argparse.Namespace) -> None:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"\nmigration throughput — legacy {args.legacy}, B = {args.budget:g} legacy req/s at "
        f"the proxy, limiter "
        f"{args.limiter_share:g}·B, {args.threads} threads per worker; "
        f"{os.cpu_count()} cores, load average {load} (a busy machine starves the workers)\n"
    )
    header = (
        f"{'scenario':<8} {'path':<8} {'shape':<11} {'users':>5} {'migr s':>7} "
        f"{'users/s':>7} {'calls/user':>10} {'legacy/s':>8} {'util':>5} {'of lim':>6} "
        f"{'wait':>5} {'429s':>5} {'500s':>5} {'done':>5} {'defer':>5} {'failed':>6} "
        f"{'600k@100':>10}"
    )
    print(header)
    print("-" * len(header))
    for o in outcomes:
        print(_row(o))
    print(
        "\nutil = accepted legacy req/s / B; of lim = the same / the limiter's rate; wait ="
        " share of thread time waiting for a legacy slot; 600k@100 = 600000 x calls/user /"
        " (100 x util)"
    )
    by_key = {(o.scenario, o.shape, o.path): o for o in outcomes}
    for (scenario, shape, path), bulk in by_key.items():
        per_user = by_key.get((scenario, shape, "per-user"))
        if path == "bulk" and per_user is not None:
            print(
                f"  {scenario}/{shape}: bulk / per-user — calls per user "
                f"{bulk.calls_per_user / per_user.calls_per_user:.3f}, users/s "
                f"{bulk.users_per_second / per_user.users_per_second:.2f}x"
            )
    for o in outcomes:
        if o.path == "bulk":
            chunks = -(-o.users // o.chunk) if o.chunk else 1
            print(
                f"  {o.scenario}/{o.shape}: account of {o.account} customers, cohort of "
                f"{o.users} in {chunks} chunks: {o.account_reads:.2f} whole-account reads"
                f" (customer-list pages / ceil(account / 100))"
            )
    if args.routes:
        for o in outcomes:
            print(f"\n  {o.scenario}/{o.path}/{o.shape}: legacy calls per user by route")
            for route, n in sorted(o.routes.items(), key=lambda kv: -kv[1]):
                print(f"    {n / o.users:>7.2f}  {route}")
    print(
        f"\n  Stripe also limits each endpoint to {ENDPOINT_LIMIT:g} req/s: the busiest route"
        " caps users/s whatever the global budget"
    )
    for o in outcomes:
        route, per_user = o.busiest_route()
        print(
            f"    {o.scenario}/{o.path}/{o.shape}: busiest {route} at {per_user:.2f} calls/user"
            f" -> <= {ENDPOINT_LIMIT / per_user if per_user else 0:.1f} users/s; 600k >= "
            f"{o.endpoint_bound_hours(PROJECT_USERS, ENDPOINT_LIMIT):.1f} h, global util at"
            f" most {min(1.0, ENDPOINT_LIMIT * o.calls_per_user / per_user / LIVE_LIMIT):.2f}"
            if per_user
            else f"    {o.scenario}/{o.path}/{o.shape}: no routes counted"
        )
    if args.timeline:
        print("\n  utilisation (accepted legacy req/s / B) in each tenth of the run")
        for o in outcomes:
            tenths = " ".join(f"{r:.2f}" for r in o.rates())
            start = " ".join(f"{r:.2f}" for r in o.rates(over=30.0))
            print(f"    {o.scenario}/{o.path}/{o.shape}: {tenths}")
            print(f"    {'':>{len(o.scenario + o.path + o.shape) - 8}}first 30 s, per 3 s: {start}")
    print("\ntargets: <= 4 calls/user (bulk, >= 500 users), utilisation >= 0.95, 0 failed")
    for o in outcomes:
        if o.failed:
            print(f"  {o.scenario}/{o.path}/{o.shape}: {o.failed} failed: {o.failures}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=500, help="the cohort")
    parser.add_argument(
        "--account", type=int, default=0, help="legacy customers in the account (>= --users)"
    )
    parser.add_argument("--chunk", type=int, default=0, help="TWINBILL_BULK_CHUNK (0: default)")
    parser.add_argument("--budget", type=float, default=20.0, help="B, legacy requests/s")
    parser.add_argument("--limiter-share", type=float, default=0.95, help="limiter rate / B")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--only", choices=sorted(SCENARIOS), action="append")
    parser.add_argument("--threads", type=int, default=3, help="threads per worker")
    parser.add_argument("--bulk", action="store_true", help="also run the bulk read path")
    parser.add_argument(
        "--bulk-only", action="store_true", help="only the bulk read path (no per-user baseline)"
    )
    parser.add_argument("--processes", type=int, default=0, help="also on N worker processes")
    parser.add_argument("--embedded", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/3")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(
            "TWINBILL_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
        ),
    )
    parser.add_argument("--routes", action="store_true", help="calls per user by route")
    parser.add_argument(
        "--timeline", action="store_true", help="utilisation in each tenth of every run"
    )
    parser.add_argument(
        "--legacy",
        choices=["localstripe", "double"],
        default="localstripe",
        help="localstripe (sandbox mix, no usable events) or the current-API double over HTTP",
    )
    args = parser.parse_args(argv)
    if (args.bulk or args.bulk_only) and not known_bulk_settings():
        print(
            "warning: this build knows neither TWINBILL_BULK_READS nor TWINBILL_EVENT_RECHECK"
            " (bulk reads / event re-check not merged yet): the bulk rows run the per-user path",
            file=sys.stderr,
        )
    paths = ["bulk"] if args.bulk_only else ["per-user", "bulk"] if args.bulk else ["per-user"]
    shapes = ([0] if args.embedded else []) + ([args.processes] if args.processes else [])
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="twinbill-bench-") as tmp:
        for name, faults in SCENARIOS.items():
            if args.only and name not in args.only:
                continue
            for processes in shapes:
                for path in paths:
                    print(
                        f"{name}/{path}/{processes or 'embedded'}: seeding {args.users} users",
                        file=sys.stderr,
                        flush=True,
                    )
                    outcomes.append(
                        run_scenario(
                            name,
                            path=path,
                            users=args.users,
                            budget=args.budget,
                            limiter_share=args.limiter_share,
                            faults=faults,
                            workdir=Path(tmp) / f"{name}-{path}-{processes}",
                            seed=args.seed,
                            threads=args.threads,
                            processes=processes,
                            redis_url=args.redis_url,
                            postgres_url=args.postgres_url,
                            legacy=args.legacy,
                            account=args.account,
                            chunk=args.chunk,
                        )
                    )
                    print(f"  {_row(outcomes[-1])}", file=sys.stderr, flush=True)
    report(outcomes, args)


if __name__ == "__main__":
    main()
