"""Shared fixtures: real services, cleaned between tests.

PostgreSQL and Redis come from the machine (``TWINBILL_TEST_POSTGRES_URL``,
``TWINBILL_TEST_REDIS_URL``). When ``TWINBILL_REQUIRE_SERVICES=1`` (CI sets it) an
unreachable service fails the test instead of skipping it, so CI never goes green
by silently skipping the integration suite.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS = "redis://127.0.0.1:6379/15"


def _unavailable(what: str, exc: Exception) -> None:
    msg = f"{what} unavailable: {exc}"
    if os.environ.get("TWINBILL_REQUIRE_SERVICES") == "1":
        pytest.fail(msg + " (TWINBILL_REQUIRE_SERVICES=1: integration tests must not be skipped)")
    pytest.skip(msg)


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    url = os.environ.get("TWINBILL_TEST_POSTGRES_URL", DEFAULT_PG)
    import sqlalchemy as sa

    try:
        eng = sa.create_engine(url)
        with eng.connect() as conn:
            conn.execute(sa.text("select 1"))
        eng.dispose()
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
        _unavailable("PostgreSQL", exc)
    return url


@pytest.fixture
def postgres_url(postgres_admin_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test; dropped afterwards."""
    from sandbox.pgdb import scratch_database

    with scratch_database(postgres_admin_url) as url:
        yield url


def _worker_redis_url(url: str) -> str:
    """One Redis db per pytest-xdist worker: gw0 keeps the configured db, gw1 the one below it.

    Two workers flushing one db would wipe each other's brokers and limiters mid-test.
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    offset = int(worker.removeprefix("gw") or 0)
    if offset == 0:
        return url
    base, _, db = url.rpartition("/")
    return f"{base}/{(int(db or 0) - offset) % 16}"


@pytest.fixture
def redis_url() -> Iterator[str]:
    """The worker's Redis db (15 for the first), flushed before and after the test."""
    url = _worker_redis_url(os.environ.get("TWINBILL_TEST_REDIS_URL", DEFAULT_REDIS))
    import redis

    try:
        client = redis.Redis.from_url(url)
        client.ping()
    except Exception as exc:  # noqa: BLE001
        _unavailable("Redis", exc)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


# every request the legacy backend sends is checked against the stripe SDK's params types
from tests.stripe_current.plugin import stripe_conformance  # noqa: E402, F401
