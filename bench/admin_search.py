"""Admin search at scale: p50/p95 of ``GET /admin/search`` on PostgreSQL.

Creates its own database on 127.0.0.1:5432 (user postgres), loads N routes and
5×N invoice numbers with COPY, builds the search indexes (revision 0005), signs
in and times typical 3+ character queries through the real endpoint (in-process
ASGI client). Prints ratios against the 100 ms p95 target; never asserts.

    .venv/bin/python bench/admin_search.py              # 1,000,000 users
    .venv/bin/python bench/admin_search.py --users 100000
    .venv/bin/python bench/admin_search.py --reuse       # load once, keep, time again
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg  # noqa: E402
import sqlalchemy as sa  # noqa: E402

TARGET_MS = 100.0
FIRST = [
    "alice",
    "bruno",
    "chloe",
    "dmitri",
    "emma",
    "farah",
    "gustav",
    "hana",
    "ivan",
    "jules",
    "kenji",
    "lena",
    "marta",
    "nils",
    "olga",
    "pablo",
    "quinn",
    "rosa",
    "sven",
    "tariq",
]
LAST = [
    "martin",
    "stone",
    "jones",
    "nguyen",
    "schmidt",
    "rossi",
    "kowalski",
    "dubois",
    "tanaka",
    "larsen",
    "okafor",
    "silva",
    "novak",
    "haddad",
    "murphy",
    "ivanova",
]


def _routes(n: int):
    rng = random.Random(1)
    for i in range(n):
        f, la = rng.choice(FIRST), rng.choice(LAST)
        uid = f"u_{i:07d}"
        system = "new" if i % 3 == 0 else "legacy"
        yield (
            uid,
            system,
            system,
            f"cus_L{i:09d}",
            f"nb_{i:09d}" if system == "new" else None,
            f"{f}.{la}{i}@example.test",
            f"{f.title()} {la.title()}",
            "EUR",
            "{}",
            1,
            "2026-01-01T00:00:00+00",
            "2026-01-01T00:00:00+00",
        )


def _invoices(n: int):
    for i in range(n * 5):
        yield (f"INV-{i:09d}", "legacy" if i % 2 else "new", f"u_{(i * 7919) % n:07d}")


def load(url: str, users: int) -> None:
    from core import dbschema

    dbschema.upgrade(url, "0004")
    raw = sa.engine.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    t0 = time.perf_counter()
    with psycopg.connect(raw) as conn, conn.cursor() as cur:
        with cur.copy(
            "COPY routes (user_id, system, state, legacy_customer_id, new_customer_id,"
            " email, name, currency, facets, version, created_at, updated_at)"
            " FROM STDIN"
        ) as copy:
            for row in _routes(users):
                copy.write_row(row)
        print(f"  routes: {users:,} rows in {time.perf_counter() - t0:.1f}s", flush=True)
    dbschema.upgrade(url, "0005")  # builds the search indexes over the loaded rows
    t1 = time.perf_counter()
    with psycopg.connect(raw) as conn, conn.cursor() as cur:
        with cur.copy("COPY invoice_numbers (number, system, user_id) FROM STDIN") as copy:
            for row in _invoices(users):
                copy.write_row(row)
        cur.execute("ANALYZE")
    print(
        f"  indexes + {users * 5:,} invoice numbers in {time.perf_counter() - t1:.1f}s", flush=True
    )


def queries(users: int) -> list[tuple[str, str]]:
    """(kind, query) pairs a support person types: 3+ characters, mostly partial."""
    rng = random.Random(7)
    out: list[tuple[str, str]] = []
    for _ in range(40):
        i = rng.randrange(users)
        out += [
            ("first name prefix", rng.choice(FIRST)[:4]),
            ("email prefix", f"{rng.choice(FIRST)}.{rng.choice(LAST)[:3]}"),
            ("last name (substring)", rng.choice(LAST)),
            ("user id", f"u_{i:07d}"),
            ("user id prefix", f"u_{i:07d}"[:6]),
            ("customer id", f"cus_L{i:09d}"),
            ("invoice number", f"INV-{rng.randrange(users * 5):09d}"),
            ("email substring", f"{i}@exam"),
            ("full name prefix", "Rosa Sil"),
        ]
    return out


def _database(admin: sa.Engine, name: str, users: int, reuse: bool) -> tuple[str, bool]:
    """Create (or, with ``reuse``, find an already loaded) scratch database; return its URL
    and whether it still has to be loaded."""
    url = admin.url.set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        exists = conn.execute(
            sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
        ).scalar()
        if exists and reuse:
            probe = sa.create_engine(url)
            try:
                with probe.connect() as c:
                    loaded = c.execute(sa.text("SELECT count(*) FROM invoice_numbers")).scalar()
            except sa.exc.DBAPIError:
                loaded = 0
            finally:
                probe.dispose()
            if loaded == users * 5:
                return url, False
        if exists:
            conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    return url, True


def run(users: int, keep: bool, reuse: bool, rounds: int) -> None:
    from fastapi.testclient import TestClient

    from admin.app import create_app
    from admin.bootstrap import bootstrap
    from admin.web.auth import create_user
    from core import dbschema
    from core.settings import load_settings
    from tests.fakes.billing import FakeBillingBackend

    admin_url = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    # a fixed name when the database outlives the run, so the next run can reuse it
    name = f"twinbill_bench_{users}" if keep or reuse else f"twinbill_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    url, fresh = _database(admin, name, users, reuse)
    try:
        if fresh:
            print(f"loading {users:,} users into {name}", flush=True)
            load(url, users)
        else:
            print(f"reusing {name} ({users:,} users already loaded)", flush=True)
            dbschema.upgrade(url)
        settings = load_settings(database_url=url, secret_key="bench-secret-key-0123456789")
        ctx = bootstrap(
            settings, backends={"legacy": FakeBillingBackend(), "new": FakeBillingBackend()}
        )
        email = f"bench-{uuid.uuid4().hex[:8]}@example.test"
        create_user(ctx.sessions, email, "support", "bench password 1", actor="bench")
        client = TestClient(create_app(ctx))
        form = client.get("/admin/login").text
        token = form.split('name="csrf_token" value="')[1].split('"')[0]
        client.post(
            "/admin/login",
            data={"email": email, "password": "bench password 1", "csrf_token": token},
        )
        qs = queries(users)
        for _, q in qs[:20]:  # warm-up: plans, caches
            client.get("/admin/search", params={"q": q}, follow_redirects=False)
        timings: dict[str, list[float]] = {}
        for _ in range(rounds):
            for kind, q in qs:
                t = time.perf_counter()
                resp = client.get("/admin/search", params={"q": q}, follow_redirects=False)
                ms = (time.perf_counter() - t) * 1000
                assert resp.status_code in (200, 303), resp.text[:200]
                timings.setdefault(kind, []).append(ms)
        every = sorted(x for v in timings.values() for x in v)
        print(
            f"\nsearch endpoint, {users:,} users / {users * 5:,} invoice numbers, "
            f"{len(every)} queries"
        )
        for kind, values in sorted(timings.items()) + [("ALL", every)]:
            values = sorted(values)
            p50 = statistics.median(values)
            p95 = values[max(0, int(len(values) * 0.95) - 1)]
            print(
                f"  {kind:<22} p50 {p50:7.1f} ms ({p50 / TARGET_MS:4.2f})   "
                f"p95 {p95:7.1f} ms   p95/target {p95 / TARGET_MS:5.2f}"
            )
        client.close()
        ctx.close()
    finally:
        if not keep:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument(
        "--keep", action="store_true", help="keep the database (twinbill_bench_N) for --reuse"
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="reuse twinbill_bench_N if it is already loaded (implies --keep)",
    )
    parser.add_argument("--rounds", type=int, default=1, help="times each query set is run")
    args = parser.parse_args()
    run(args.users, args.keep or args.reuse, args.reuse, args.rounds)


if __name__ == "__main__":
    main()
