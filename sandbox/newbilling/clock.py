"""Time handling: every timestamp is stored and returned as UTC.

Clients may send any ISO-8601 offset (``+02:00``); it is normalised to UTC on the
way in. Naive timestamps are rejected because guessing their zone is exactly the
kind of silent shift a migration must not make.
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import DateTime
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    """Now, UTC, truncated to whole seconds so amounts prorate on whole seconds."""
    return datetime.now(UTC).replace(microsecond=0)


def to_utc(value: datetime) -> datetime:
    """Normalise an aware datetime to UTC; naive values are a programming error here."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("timestamp must include a timezone offset (e.g. 2024-01-31T00:00:00Z)")
    return value.astimezone(UTC)


def fmt(value: datetime | None) -> str | None:
    """ISO-8601 UTC with a ``Z`` suffix; microseconds only when present."""
    if value is None:
        return None
    value = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        text += f".{value.microsecond:06d}"
    return text + "Z"


def add_interval(start: datetime, interval: str, count: int) -> datetime:
    """Advance by a billing interval; months clamp to the month end (Jan 31 + 1 month = Feb 28)."""
    if interval == "day":
        return start + timedelta(days=count)
    if interval == "week":
        return start + timedelta(weeks=count)
    months = count * (12 if interval == "year" else 1)
    month_index = start.month - 1 + months
    year, month = start.year + month_index // 12, month_index % 12 + 1
    day = min(start.day, calendar.monthrange(year, month)[1])
    return start.replace(year=year, month=month, day=day)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores naive UTC (SQLite keeps no zone) and always hands back aware UTC."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return to_utc(value).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
