"""Reconcile throughput: 100,000 synthetic users (~20 records each), streamed.

Writes a legacy snapshot file (NDJSON of ``LegacyEntry`` lines) and a new-system
export (NDJSON of canonical histories, the new system's own ids, legacy ids
carried over, 1% of users with a deliberate difference) to a temp directory,
then times only the reconcile: ``reconcile_stream`` merge-joins both files,
folding every result into a report summary and the cohort money totals.

Each measured run happens in a fresh child process so its peak RSS
(``resource.getrusage``) belongs to that run alone; 10k and 100k users are
compared to show memory is flat in the number of users.

Targets: >= 5,000 users/s on one core; peak memory at 100k / at 10k ~ 1.0.
Prints ratios, asserts nothing about timings.

    python bench/reconcile_throughput.py [--users 100000] [--small 10000] [--keep-files]
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TARGET_USERS_PER_S = 5_000
T0 = 1_700_000_000
DAY = 86_400


def _iso(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def legacy_history(n: int) -> dict[str, Any]:
    """~20 records: customer, subscription + 2 items, discount, 5 invoices + lines,
    4 payments, 1 refund."""
    uid = f"u{n:07d}"
    cur = ("EUR", "USD", "JPY")[n % 3]
    start = T0 + (n % 1000) * 3600
    sid = f"sub_{uid}"
    invoices, payments = [], []
    for k in range(5):
        iid = f"in_{uid}_{k}"
        invoices.append(
            {
                "id": iid,
                "legacy_id": iid,
                "currency": cur,
                "number": f"INV-{n}-{k}",
                "subscription_id": sid,
                "status": "paid",
                "created_at": _iso(start + k * 30 * DAY),
                "period_start": _iso(start + k * 30 * DAY),
                "period_end": _iso(start + (k + 1) * 30 * DAY),
                "due_at": None,
                "paid_at": _iso(start + k * 30 * DAY + 60),
                "subtotal": 1500,
                "discount_total": 150,
                "tax": 0,
                "total": 1350,
                "amount_paid": 1350,
                "amount_due": 0,
                "balance_applied": 0,
                "paid_out_of_band": False,
                "metadata": {},
                "lines": [
                    {
                        "id": f"il_{uid}_{k}",
                        "legacy_id": f"il_{uid}_{k}",
                        "description": "Pro",
                        "amount": 1500,
                        "quantity": 1,
                        "period_start": _iso(start + k * 30 * DAY),
                        "period_end": _iso(start + (k + 1) * 30 * DAY),
                        "proration": False,
                        "plan_code": "pro",
                    }
                ],
            }
        )
        if k < 4:
            pid = f"py_{uid}_{k}"
            payments.append(
                {
                    "id": pid,
                    "legacy_id": pid,
                    "currency": cur,
                    "invoice_id": iid,
                    "amount": 1350,
                    "status": "succeeded",
                    "method": "card",
                    "payment_method_id": f"pm_{uid}",
                    "reference": None,
                    "paid_at": _iso(start + k * 30 * DAY + 60),
                    "amount_refunded": 300 if k == 1 else 0,
                }
            )
    return {
        "user_id": uid,
        "system": "legacy",
        "customer": {
            "id": f"cus_{uid}",
            "legacy_id": f"cus_{uid}",
            "currency": cur,
            "user_id": uid,
            "email": f"{uid}@example.com",
            "name": f"User {n}",
            "balance": 0,
            "payment_method_ids": [f"pm_{uid}"],
            "created_at": _iso(start - DAY),
            "metadata": {"app_user": uid},
        },
        "subscriptions": [
            {
                "id": sid,
                "legacy_id": sid,
                "currency": cur,
                "status": "active",
                "created_at": _iso(start),
                "current_period_start": _iso(start + 120 * DAY),
                "current_period_end": _iso(start + 150 * DAY),
                "trial_start": None,
                "trial_end": None,
                "cancel_at_period_end": False,
                "canceled_at": None,
                "ended_at": None,
                "items": [
                    {
                        "id": f"si_{uid}_{k}",
                        "legacy_id": f"si_{uid}_{k}",
                        "plan_code": p,
                        "product_name": p.title(),
                        "unit_amount": a,
                        "quantity": 1,
                        "interval": "month",
                        "interval_count": 1,
                    }
                    for k, (p, a) in enumerate((("pro", 1200), ("addon", 300)))
                ],
                "metadata": {},
            }
        ],
        "discounts": [
            {
                "id": f"di_{uid}",
                "legacy_id": f"di_{uid}",
                "subscription_id": sid,
                "coupon_code": "TEN",
                "percent_off_bp": 1000,
                "amount_off": None,
                "currency": None,
                "duration": "forever",
                "duration_in_months": None,
                "starts_at": _iso(start),
                "ends_at": None,
            }
        ],
        "invoices": invoices,
        "payments": payments,
        "refunds": [
            {
                "id": f"re_{uid}",
                "legacy_id": f"re_{uid}",
                "currency": cur,
                "payment_id": f"py_{uid}_1",
                "amount": 300,
                "reason": "requested_by_customer",
                "method": "card",
                "reference": None,
                "created_at": _iso(start + 40 * DAY),
            }
        ],
    }


def _renamed(rec: dict[str, Any]) -> dict[str, Any]:
    out = {**rec, "id": "n" + rec["id"], "legacy_id": rec["id"]}
    for ref in ("subscription_id", "invoice_id", "payment_id"):
        if out.get(ref):
            out[ref] = "n" + out[ref]
    for child in ("items", "lines"):
        if child in out:
            out[child] = [_renamed(c) for c in out[child]]
    return out


def new_history(legacy: dict[str, Any], n: int) -> dict[str, Any]:
    doc = {"user_id": legacy["user_id"], "system": "new", "customer": _renamed(legacy["customer"])}
    for key in ("subscriptions", "discounts", "invoices", "payments", "refunds"):
        doc[key] = [_renamed(r) for r in legacy[key]]
    if n % 100 == 7:  # 1%: a deliberate mapping bug, so the reconcile has findings to report
        doc["invoices"][2]["paid_at"] = _iso(T0 + 3600)
    return doc


def generate(directory: Path, users: int) -> tuple[Path, Path]:
    legacy_path, new_path = directory / "legacy.ndjson", directory / "new.ndjson"
    with legacy_path.open("w") as lf, new_path.open("w") as nf:
        for n in range(users):
            legacy = legacy_history(n)
            lf.write(json.dumps({"history": legacy, "cohort": f"c{n % 10}"}) + "\n")
            nf.write(json.dumps(new_history(legacy, n)) + "\n")
    return legacy_path, new_path


def child(users: int, legacy_path: str, new_path: str) -> None:
    from reconciler.invariants import PopulationTotals
    from reconciler.projection import LegacyEntry, StreamStats, reconcile_stream
    from reconciler.report import Report, ReportBuilder

    builder = ReportBuilder(Report("all", None, "bench"), keep=1000)
    totals, stats = PopulationTotals(), StreamStats()
    with open(legacy_path, "rb") as lf, open(new_path, "rb") as nf:
        entries = (LegacyEntry.from_json(line) for line in itertools.islice(lf, users))
        started = time.perf_counter()
        for result in reconcile_stream(
            entries, itertools.islice(nf, users), totals=totals, stats=stats
        ):
            builder.add(result)
        elapsed = time.perf_counter() - started
    report = builder.report
    report.population_violations = totals.violations()
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "users": stats.users,
                "seconds": elapsed,
                "users_per_s": stats.users / elapsed,
                "peak_rss_mib": peak_kib / 1024,
                "users_with_differences": report.summary.users_with_differences,
                "differences": report.summary.differences,
                "cohort_violations": len(report.population_violations),
            }
        )
    )


def run_child(users: int, legacy: Path, new: Path) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(users), str(legacy), str(new)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--keep-files", action="store_true")
    parser.add_argument("--child", nargs=3, metavar=("USERS", "LEGACY", "NEW"))
    args = parser.parse_args()
    if args.child:
        child(int(args.child[0]), args.child[1], args.child[2])
        return
    with tempfile.TemporaryDirectory(prefix="twinbill-bench-") as tmp:
        started = time.perf_counter()
        legacy, new = generate(Path(tmp), args.users)
        size = (legacy.stat().st_size + new.stat().st_size) / 2**20
        print(
            f"generated {args.users:,} users ({size:,.0f} MiB of NDJSON) in "
            f"{time.perf_counter() - started:.1f}s (not timed below)"
        )
        small = run_child(args.small, legacy, new)
        big = run_child(args.users, legacy, new)
        if args.keep_files:
            print(f"files kept in {tmp} until exit")
    for label, r in (("small", small), ("full", big)):
        print(
            f"{label:>5}: {r['users']:>7,} users in {r['seconds']:6.2f}s = "
            f"{r['users_per_s']:8,.0f} users/s; peak RSS {r['peak_rss_mib']:6.1f} MiB; "
            f"{r['users_with_differences']:,} users with differences "
            f"({r['differences']:,} differences)"
        )
    print(
        f"throughput ratio (users/s / {TARGET_USERS_PER_S:,} target): "
        f"{big['users_per_s'] / TARGET_USERS_PER_S:.2f}"
    )
    print(
        f"memory ratio (peak RSS {args.users:,} / {args.small:,} users; flat ~ 1.0): "
        f"{big['peak_rss_mib'] / small['peak_rss_mib']:.2f}"
    )


if __name__ == "__main__":
    main()
