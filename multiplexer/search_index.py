"""The invoice-number index behind the admin search box: which user an invoice number belongs to.

Customers quote invoice numbers; neither billing system can be searched by them
at scale, so twinbill keeps its own ``invoice_numbers`` table (number, system,
user). It lives in the multiplexer layer so that every layer above can keep it
in sync: the migration's verify step indexes both sides of a migrated user, the
admin user page indexes what it just read, and ``twinbill users index-invoices``
backfills everyone. Upserts are idempotent.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, sessionmaker

from core.db import transaction
from core.errors import TwinbillError, UnknownUser
from multiplexer.backends.base import UserRef
from multiplexer.models import InvoiceNumber, Route

log = logging.getLogger("twinbill.multiplexer")

SYSTEMS = ("legacy", "new")
MAX_NUMBER = 120  # the column's width; longer numbers are not indexed
BATCH = 1000


def index_invoice_numbers(
    session: Session, user_id: str, system: str, numbers: Iterable[str | None]
) -> int:
    """Record that ``numbers`` (from ``system``) belong to ``user_id``; returns how many.

    Idempotent: a number already indexed for the same system is pointed at this user
    (the latest writer wins). Empty and over-long numbers are skipped. Does not commit.
    """
    if system not in SYSTEMS:
        raise ValueError(f"system must be one of {SYSTEMS}, not {system!r}")
    unique = sorted({n.strip() for n in numbers if n and n.strip()})
    rows = [
        {"number": n, "system": system, "user_id": user_id} for n in unique if len(n) <= MAX_NUMBER
    ]
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    for start in range(0, len(rows), BATCH):
        stmt = insert(InvoiceNumber).values(rows[start : start + BATCH])
        stmt = stmt.on_conflict_do_update(
            index_elements=["number", "system"],
            set_={"user_id": stmt.excluded.user_id},
            where=InvoiceNumber.user_id != stmt.excluded.user_id,  # a re-run writes nothing
        )
        session.execute(stmt)
    return len(rows)


@dataclass
class BackfillResult:
    users: int = 0
    numbers: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # user id -> error

    def as_dict(self) -> dict[str, Any]:
        return {"users": self.users, "numbers": self.numbers, "failed": self.failed}


def _routes(
    sessions: sessionmaker[Session], user_id: str | None, page_size: int
) -> Iterator[tuple[str, str, str | None]]:
    """(user id, system, legacy customer id) of one user or of everyone, paged by user id."""
    cols = (Route.user_id, Route.system, Route.legacy_customer_id)
    if user_id is not None:
        with sessions() as session:
            row = session.execute(sa.select(*cols).where(Route.user_id == user_id)).first()
        if row is None:
            raise UnknownUser(user_id)
        yield row[0], row[1], row[2]
        return
    after = ""
    while True:
        with sessions() as session:
            rows = session.execute(
                sa.select(*cols)
                .where(Route.user_id > after)
                .order_by(Route.user_id)
                .limit(page_size)
            ).all()
        yield from ((r[0], r[1], r[2]) for r in rows)
        if len(rows) < page_size:
            return
        after = rows[-1][0]


def backfill(
    sessions: sessionmaker[Session],
    legacy: Any,
    new: Any,
    *,
    user_id: str | None = None,
    page_size: int = 500,
) -> BackfillResult:
    """Index the invoice numbers of one user (``user_id``) or of every routed user.

    A user with a legacy customer has its legacy invoices listed through the legacy
    backend (each call takes a slot of the shared rate limiter, so a backfill never
    starves migrations of their budget); a user on the new system has its bundle read
    from the new backend. Idempotent: run it again and nothing changes. A user whose
    systems cannot be read is reported and skipped; the rest go on.
    """
    result = BackfillResult()
    for uid, system, legacy_customer in _routes(sessions, user_id, page_size):
        found: list[tuple[str, list[str | None]]] = []
        try:
            if legacy_customer:
                invoices = legacy.list_invoices(UserRef(uid, legacy_customer))
                found.append(("legacy", [i.number for i in invoices]))
            if system == "new":
                history = new.map_bundle(new.get_bundle(uid))
                found.append(("new", [i.number for i in history.invoices]))
        except TwinbillError as exc:
            log.warning("could not index the invoices of %s: %s", uid, exc)
            result.failed[uid] = str(exc)
            continue
        with transaction(sessions) as session:
            for which, numbers in found:
                result.numbers += index_invoice_numbers(session, uid, which, numbers)
        result.users += 1
    return result
