"""Imports per second into the reference newbilling service, over real HTTP.

Each import is one user with 10 paid invoices (plus their lines, payments, a
refund, a subscription and a discount), sent sequentially by one client with
keep-alive: the number is the service's single-writer throughput, which bounds
how fast a migration cohort can land. Runs on SQLite and on PostgreSQL (a
scratch database created and dropped here) and prints PostgreSQL / SQLite.
Prints numbers only: timings are never asserted.

    python bench/newbilling_import.py [--count 200] [--postgres-url URL] [--skip-postgres]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sandbox.newbilling.samples import sample_import  # noqa: E402

TOKEN = "bench-token"
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _serve(database_url: str) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sandbox.newbilling",
            "serve",
            "--port",
            str(port),
            "--database-url",
            database_url,
        ],
        cwd=ROOT,
        env={**os.environ, "NEWBILLING_API_TOKENS": TOKEN},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"newbilling exited: {proc.stderr.read().decode()}")  # type: ignore[union-attr]
        try:
            if httpx.get(f"{base}/healthz", timeout=0.5).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("newbilling did not start")


def run(database_url: str, count: int, warmup: int = 5) -> float:
    """Imports/s for ``count`` 10-invoice users (after ``warmup`` untimed ones)."""
    proc, base = _serve(database_url)
    try:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
            payloads = [
                sample_import(f"bench_{i:06d}", n_invoices=10) for i in range(warmup + count)
            ]
            for i, payload in enumerate(payloads[:warmup]):
                _post(client, payload, f"w{i}")
            started = time.perf_counter()
            for i, payload in enumerate(payloads[warmup:]):
                _post(client, payload, f"b{i}")
            elapsed = time.perf_counter() - started
        return count / elapsed
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _post(client: httpx.Client, payload: dict, key: str) -> None:
    response = client.post("/v1/imports", json=payload, headers={"Idempotency-Key": key})
    if response.status_code != 201:
        raise SystemExit(f"import failed: {response.status_code} {response.text[:300]}")


def _postgres(admin_url: str, count: int) -> float | None:
    try:
        import sqlalchemy as sa
        from sqlalchemy.engine import make_url

        admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
        name = f"newbilling_bench_{uuid.uuid4().hex[:10]}"
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001 - report and carry on with SQLite only
        print(f"PostgreSQL unavailable ({exc.__class__.__name__}: {exc}); skipped")
        return None
    try:
        url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        return run(url, count)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200, help="timed imports per backend")
    parser.add_argument("--postgres-url", default=DEFAULT_PG, help="admin URL (scratch DB made)")
    parser.add_argument("--skip-postgres", action="store_true")
    args = parser.parse_args()

    results: dict[str, float | None] = {}
    with tempfile.TemporaryDirectory() as tmp:
        results["SQLite"] = run(f"sqlite:///{tmp}/bench.db", args.count)
    results["PostgreSQL"] = None if args.skip_postgres else _postgres(args.postgres_url, args.count)

    print(f"\nnewbilling imports ({args.count} users x 10 invoices, sequential, one client)")
    print(f"{'backend':<12} {'imports/s':>10} {'ms/import':>10}")
    for name, rate in results.items():
        if rate is None:
            print(f"{name:<12} {'-':>10} {'-':>10}")
        else:
            print(f"{name:<12} {rate:>10.1f} {1000 / rate:>10.2f}")
    sqlite, pg = results["SQLite"], results["PostgreSQL"]
    if sqlite and pg:
        print(f"ratio PostgreSQL / SQLite: {pg / sqlite:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
