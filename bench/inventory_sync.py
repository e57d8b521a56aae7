"""`twinbill users sync` (bulk account-wide lists) against the per-customer read path.

Seeds ``--customers`` legacy customers (timed separately: seeding is not syncing)
into a private localstripe (``--legacy localstripe``: the sandbox population, every
configuration round-robin, in localstripe's dialect) or into the current-API double
served over HTTP (``--legacy double``: ``seed_varied``'s mix of EUR, USD, JPY and KWD,
monthly and yearly, 1–3 paid invoices each, held in memory, so 10,000 seed in seconds
where localstripe takes most of an hour), then in one run:

* **bulk**: ``migration.readiness.sync_legacy`` — the account-wide lists, 100 per
  page, facets and preflight verdicts, routes written (SQLite);
* **per customer**: for ``--sample`` customers, the per-user snapshot
  (``snapshot`` + ``map_snapshot``: one set of lists per customer) and the same
  facets — what an inventory built on the per-user read path would cost.

Legacy calls are counted at the client (slots taken from the legacy limiter).
Prints calls per customer, customers/s and the ratios bulk/per-customer, the growth of
the process's peak memory during the sync (what it holds at once), plus the
projected time for 600,000 customers at Stripe's live limit of 100 req/s (calls
bound). localstripe scans its whole store on every list call, so its wall-clock
numbers favour neither path much; the call ratio is what carries to real Stripe.
Asserts nothing.

    .venv/bin/python bench/inventory_sync.py --customers 10000 --sample 300 --legacy double
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PROJECT_USERS, LIVE_LIMIT = 600_000, 100.0


@contextlib.contextmanager
def _legacy(kind: str, customers: int, seed_no: int) -> Iterator[tuple[dict, list, float]]:
    """Seed ``customers`` into the legacy system: (its settings, [(user, customer)], seconds)."""
    t0 = time.perf_counter()
    if kind == "localstripe":
        from sandbox.legacy.launcher import LocalStripe
        from sandbox.legacy.population import seed

        def tick(n: int, total: int) -> None:
            if n % 500 == 0:
                print(f"  seeded {n}/{total}", file=sys.stderr, flush=True)

        with LocalStripe() as server:
            seeded = seed(server.client(), customers, seed_no, progress=tick)
            pairs = [(u.app_user_id, u.customer_id) for u in seeded]
            settings = {
                "legacy_backend": "localstripe",
                "legacy_api_base": server.url,
                "legacy_api_key": server.api_key,
            }
            yield settings, pairs, time.perf_counter() - t0
        return
    # the current-API double is a test double (tests/stripe_current), seeded in memory
    from tests.stripe_current.configurations import seed_varied
    from tests.stripe_current.double import StripeDouble
    from tests.stripe_current.served import API_KEY, ServedDouble

    double = StripeDouble()
    pairs = [(f"u-v{i:05d}", seed_varied(double, f"v{i:05d}", i)) for i in range(customers)]
    seconds = time.perf_counter() - t0
    with ServedDouble(double) as url:
        settings = {"legacy_backend": "stripe", "legacy_api_base": url, "legacy_api_key": API_KEY}
        yield settings, pairs, seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--sample", type=int, default=300, help="customers read one by one")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--legacy",
        choices=["localstripe", "double"],
        default="localstripe",
        help="localstripe (the sandbox population) or the current-API double over HTTP",
    )
    args = parser.parse_args(argv)
    os.environ.pop("TWINBILL_REDIS_URL", None)

    from core import dbschema
    from core.settings import load_settings
    from migration.readiness import sync_legacy
    from multiplexer.backends.base import UserRef
    from multiplexer.backends.stripe.bulk import features
    from multiplexer.bootstrap import build
    from multiplexer.facets import compute

    with (
        tempfile.TemporaryDirectory(prefix="twinbill-bench-") as tmp,
        _legacy(args.legacy, args.customers, args.seed) as (legacy, seeded, seed_s),
    ):
        settings = load_settings(
            database_url=f"sqlite:///{Path(tmp) / 'twinbill.db'}",
            redis_url=None,
            **legacy,
            new_base_url="http://127.0.0.1:9",
            new_api_token="unused",
            legacy_rate_limit=100_000,
        )
        dbschema.upgrade(settings.database_url)
        ctx = build(settings)
        limiter = ctx.limiters["legacy"]

        before = limiter.stats()["acquired"]
        peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        t0 = time.perf_counter()
        report = sync_legacy(ctx, actor="bench")
        bulk_s = time.perf_counter() - t0
        peak_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before
        bulk_calls = limiter.stats()["acquired"] - before
        bulk_n = report.created + report.updated + report.refreshed + report.unchanged

        sample = seeded[: args.sample]
        before = limiter.stats()["acquired"]
        t0 = time.perf_counter()
        for user_id, customer_id in sample:
            snap = ctx.legacy.snapshot(UserRef(user_id, customer_id))
            compute(ctx.legacy.map_snapshot(snap), features(snap.objects))
        one_s = time.perf_counter() - t0
        one_calls = limiter.stats()["acquired"] - before
        ctx.close()

    bulk_cpc, one_cpc = bulk_calls / bulk_n, one_calls / len(sample)
    bulk_rate, one_rate = bulk_n / bulk_s, len(sample) / one_s

    def projection(cpc: float) -> str:
        hours = PROJECT_USERS * cpc / LIVE_LIMIT / 3600
        return f"{hours:.2f} h" if hours >= 1 else f"{hours * 60:.1f} min"

    print(
        f"\nusers sync — {args.customers} legacy customers on {args.legacy} "
        f"(seeded in {seed_s:.0f}s), per-customer sample {len(sample)}\n"
    )
    header = (
        f"{'path':<13} {'customers':>9} {'calls':>7} {'calls/cust':>10} {'seconds':>8} "
        f"{'cust/s':>8} {'600k @100 r/s':>14}"
    )
    print(header)
    print("-" * len(header))
    for name, n, calls, cpc, secs, rate in (
        ("bulk", bulk_n, bulk_calls, bulk_cpc, bulk_s, bulk_rate),
        ("per customer", len(sample), one_calls, one_cpc, one_s, one_rate),
    ):
        print(
            f"{name:<13} {n:>9} {calls:>7} {cpc:>10.3f} {secs:>8.1f} {rate:>8.1f} "
            f"{projection(cpc):>14}"
        )
    print(
        f"\nratio bulk / per customer: calls per customer {bulk_cpc / one_cpc:.4f} "
        f"({one_cpc / bulk_cpc:.0f}x fewer), customers/s {bulk_rate / one_rate:.1f}x"
    )
    print(
        f"conflicts {len(report.conflicts)}, unreadable {len(report.unreadable)}, "
        f"skipped {len(report.skipped)}"
    )
    # the process's peak resident memory grew this much during the sync (over the seeded
    # legacy double's own): what the sync holds at once
    print(f"peak memory growth during the sync: {peak_growth / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
