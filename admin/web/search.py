"""One search box over the routing table and the invoice-number index, fast at millions of rows.

Two passes, case-insensitive, each branch its own indexed statement
``... AND user_id > :after ORDER BY user_id LIMIT n`` (keyset pagination on
user_id: no OFFSET, no COUNT anywhere):

1. **Exact and prefix** (always): exact app user id / legacy / new customer id;
   prefix of invoice number, app user id, email and name
   (``lower(col) LIKE 'q%'`` on ``text_pattern_ops`` btree indexes).
2. **Substring** of email and name (``lower(col) LIKE '%q%'``, pg_trgm GIN on
   PostgreSQL), so "smith" finds "alice.smith@…" — only when it is worth it:
   the query has 4+ characters, is not an exact id or invoice number, and the
   prefix pass has fewer matches than a page. Short or common text ("alic",
   "u_0001") is answered by prefix alone: that is the slow tail trigram scans
   had at a million users (hundreds of thousands of candidate rows to recheck).

The pass is chosen from the query alone (not from the page), so every page of
one search uses the same rule and keyset pagination stays consistent. On
PostgreSQL each search forces custom plans: a generic plan of
``LIKE $1`` cannot use the prefix indexes.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from multiplexer.models import InvoiceNumber, Route
from multiplexer.search_index import index_invoice_numbers

__all__ = ["PAGE_SIZE", "Hit", "Page", "index_invoice_numbers", "search"]

PAGE_SIZE = 25
MIN_SUBSTRING = 4
MAX_QUERY = 200


@dataclass(frozen=True, slots=True)
class Hit:
    user_id: str
    email: str | None
    name: str | None
    system: str
    state: str
    legacy_customer_id: str | None
    new_customer_id: str | None
    currency: str | None


@dataclass(frozen=True, slots=True)
class Page:
    query: str
    hits: list[Hit]
    next_after: str | None  # pass as ``after`` for the next page; None on the last page


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _like(column: sa.ColumnElement[str], pattern: str) -> sa.ColumnElement[bool]:
    return sa.func.lower(column).like(pattern, escape="\\")


def _exact(q: str, low: str) -> list[sa.Select[tuple[str]]]:
    rid = Route.user_id
    return [
        sa.select(rid).where(
            sa.or_(rid == q, Route.legacy_customer_id == q, Route.new_customer_id == q)
        ),
        sa.select(InvoiceNumber.user_id).where(sa.func.lower(InvoiceNumber.number) == low),
    ]


#: (column, its ``lower(...)`` in SQL) of the prefix branches; the SQL names the
#: ``text_pattern_ops`` index order (``USING ~<~``) on PostgreSQL.
_PREFIX_COLUMNS: tuple[tuple[sa.ColumnElement[str], str], ...] = (
    (InvoiceNumber.number, "lower(invoice_numbers.number)"),
    (Route.user_id, "lower(routes.user_id)"),
    (Route.email, "lower(routes.email)"),
    (Route.name, "lower(routes.name)"),
)
#: A prefix branch first reads at most this many matches in its own index's order (a
#: bounded range scan); only a prefix matching more falls back to a walk in user_id
#: order. Without it the planner may walk the primary key for "u_0999" and filter
#: 999,000 rows before the first match (ids are correlated with the key).
PREFIX_CAP = 1000


def _prefix_branch(column: sa.ColumnElement[str], prefix: str) -> sa.Select[tuple[str]]:
    owner = InvoiceNumber.user_id if column is InvoiceNumber.number else Route.user_id
    return sa.select(owner).where(_like(column, prefix))


def _prefix(prefix: str) -> list[sa.Select[tuple[str]]]:
    return [_prefix_branch(column, prefix) for column, _ in _PREFIX_COLUMNS]


def _prefix_pass(session: Session, prefix: str, after: str | None, n: int, found: set[str]) -> None:
    if session.get_bind().dialect.name != "postgresql":
        _collect(session, [_page_of(s, after, n) for s in _prefix(prefix)], found)
        return
    for column, lowered in _PREFIX_COLUMNS:
        stmt = _prefix_branch(column, prefix)
        owner = stmt.selected_columns[0]
        capped = stmt.where(owner > after) if after is not None else stmt
        ids = list(
            session.scalars(
                capped.order_by(sa.literal_column(f"{lowered} USING ~<~")).limit(PREFIX_CAP + 1)
            )
        )
        if len(ids) <= PREFIX_CAP:  # that is every match: keep the first n by user_id
            found.update(sorted(set(ids))[:n])
        else:
            found.update(session.scalars(_page_of(stmt, after, n)))


def _substring(pattern: str) -> list[sa.Select[tuple[str]]]:
    rid = Route.user_id
    return [
        sa.select(rid).where(_like(Route.email, pattern)),
        sa.select(rid).where(_like(Route.name, pattern)),
    ]


def _page_of(stmt: sa.Select[tuple[str]], after: str | None, n: int) -> sa.Select[tuple[str]]:
    column = stmt.selected_columns[0]
    if after is not None:
        stmt = stmt.where(column > after)
    return stmt.order_by(column).limit(n)


def _collect(session: Session, stmts: list[sa.Select[tuple[str]]], found: set[str]) -> bool:
    """Run each branch as its own statement (its own plan: an index walk for dense matches,
    an index range or bitmap scan for rare ones — measured faster than one UNION)."""
    hit = False
    for stmt in stmts:
        before = len(found)
        found.update(session.scalars(stmt))
        hit = hit or len(found) > before
    return hit


def _at_least(session: Session, stmts: list[sa.Select[tuple[str]]], n: int) -> bool:
    """Whether the branches together match ``n`` distinct users (stops counting at n)."""
    union = sa.union(*(sa.select(s.limit(n).subquery().c[0]) for s in stmts)).subquery()
    capped = sa.select(union.c[0]).limit(n).subquery()
    return (session.scalar(sa.select(sa.func.count()).select_from(capped)) or 0) >= n


def _wants_substring(
    session: Session, q: str, low: str, prefix: str, after: str | None, first: list[int], n: int
) -> bool:
    """Whether to run the substring pass; decided from the query alone. ``first`` is what the
    prefix pass found on this page: (exact matches, all matches)."""
    exact, total = first
    if len(low) < MIN_SUBSTRING or exact:
        return False
    if after is None:  # on the first page the prefix pass already tells
        return total < n
    found: set[str] = set()
    if _collect(session, [s.limit(1) for s in _exact(q, low)], found):
        return False
    return not _at_least(session, _prefix(prefix), n)


def search(
    session: Session, query: str, *, after: str | None = None, limit: int = PAGE_SIZE
) -> Page:
    q = " ".join((query or "").split())[:MAX_QUERY]
    if not q:
        return Page(q, [], None)
    low = q.lower()
    prefix = f"{_escape(low)}%"
    n = limit + 1
    if session.get_bind().dialect.name == "postgresql":
        session.execute(sa.text("SET LOCAL plan_cache_mode = force_custom_plan"))
    found: set[str] = set()
    _collect(session, [_page_of(s, after, n) for s in _exact(q, low)], found)
    exact = len(found)
    _prefix_pass(session, prefix, after, n, found)
    if _wants_substring(session, q, low, prefix, after, [exact, len(found)], n):
        pattern = f"%{_escape(low)}%"
        _collect(session, [_page_of(s, after, n) for s in _substring(pattern)], found)
    page_ids = sorted(found)[:n]
    more = len(page_ids) > limit
    page_ids = page_ids[:limit]
    rid = Route.user_id
    rows = {r.user_id: r for r in session.scalars(sa.select(Route).where(rid.in_(page_ids)))}
    hits = [
        Hit(
            r.user_id,
            r.email,
            r.name,
            r.system,
            r.state,
            r.legacy_customer_id,
            r.new_customer_id,
            r.currency,
        )
        for uid in page_ids
        if (r := rows.get(uid)) is not None
    ]
    return Page(q, hits, page_ids[-1] if more and page_ids else None)
