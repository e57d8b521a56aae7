"""A fresh PostgreSQL database for one test or one bench scenario, dropped afterwards.

The test suite (``tests/conftest.py: postgres_url``) and the throughput bench
(``bench/throughput_run.py``) both need one; ``WITH (FORCE)`` drops it even while a
worker process it started still holds a connection.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def scratch_database(admin_url: str, prefix: str = "twinbill_test") -> Iterator[str]:
    """Create ``<prefix>_<random>`` through ``admin_url``; yield its URL; drop it."""
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
