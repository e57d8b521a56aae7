"""Finance: offline payments and refunds by date range, on screen and as CSV.

The CSV is opened in spreadsheets: a cell that starts with ``= + - @`` (or a tab or
carriage return) would run as a formula there, so such cells get a leading ``'``
(OWASP "CSV injection"). Every export is written to the activity log.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import date, timedelta

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response, StreamingResponse

from admin.web import AdminWeb, page
from admin.web.access import guard
from admin.web.auth import Principal
from admin.web.offline import OfflineRow, list_offline
from core import audit
from core.db import transaction

router = APIRouter(dependencies=[Depends(guard)])
PAGE = 100
CSV_FIELDS = (
    "recorded_at",
    "happened_on",
    "kind",
    "user_id",
    "system",
    "record_id",
    "amount",
    "currency",
    "reference",
    "actor",
    "reason",
)


def _range(start: str, end: str) -> tuple[date, date, str | None]:
    today = date.today()
    try:
        lo = date.fromisoformat(start) if start else today - timedelta(days=30)
        hi = date.fromisoformat(end) if end else today
    except ValueError:
        return today - timedelta(days=30), today, "Dates must look like 2026-11-20."
    if lo > hi:
        return hi, lo, "The start date was after the end date; they were swapped."
    return lo, hi, None


@router.get("/admin/finance/offline")
def offline_list(
    request: Request, start: str = "", end: str = "", kind: str = "", after: int | None = None
) -> Response:
    web: AdminWeb = request.app.state.admin
    lo, hi, warning = _range(start, end)
    with web.ctx.sessions() as session:
        rows = list(list_offline(session, lo, hi, after_id=after, limit=PAGE + 1))
    more = len(rows) > PAGE
    rows = rows[:PAGE]
    if kind in ("payment", "refund"):
        rows = [r for r in rows if r.kind == kind]
    totals: dict[tuple[str, str], int] = {}
    for r in rows:
        totals[(r.kind, r.currency)] = totals.get((r.kind, r.currency), 0) + r.amount
    return page(
        request,
        "finance.html",
        rows=rows,
        start=lo.isoformat(),
        end=hi.isoformat(),
        kind=kind,
        warning=warning,
        totals=sorted(totals.items()),
        next_after=rows[-1].id if more and rows else None,
    )


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def cell(value: object) -> str:
    """A CSV cell a spreadsheet shows as text, never evaluates as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def _csv(rows: Iterator[OfflineRow]) -> Iterator[str]:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: cell(v) for k, v in row.as_dict().items()})
        yield buf.getvalue()
        buf.seek(0)
        buf.truncate()
    yield buf.getvalue()


@router.get("/admin/finance/offline.csv")
def offline_csv(
    request: Request, start: str = "", end: str = "", me: Principal = Depends(guard)
) -> Response:
    web: AdminWeb = request.app.state.admin
    lo, hi, _ = _range(start, end)
    with web.ctx.sessions() as session:
        rows = list(list_offline(session, lo, hi))
    with transaction(web.ctx.sessions) as session:
        audit.record(
            session,
            actor=me.actor,
            action="finance.offline_export",
            resource_type="export",
            resource_id=f"offline:{lo.isoformat()}..{hi.isoformat()}",
            after={"start": lo.isoformat(), "end": hi.isoformat(), "rows": len(rows)},
        )
    name = f"offline-{lo.isoformat()}-{hi.isoformat()}.csv"
    return StreamingResponse(
        _csv(iter(rows)),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
