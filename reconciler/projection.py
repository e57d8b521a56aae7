"""Orchestration: bring both sides' canonical projections together and check them.

Defined against plain callables so any wiring works: the lead plugs in the
legacy adapter (stored snapshot, or a refetch, mapped by ``map_snapshot``) and
the new adapter (``GET /v1/users/{id}/bundle`` mapped by ``map_bundle``).

Two paths:

* per user (:func:`reconcile_user`, :func:`reconcile_users`): typed
  ``BillingHistory`` models in, a :class:`~reconciler.report.Report` out;
* bulk (:func:`reconcile_stream`): a stream of legacy entries and the new
  system's NDJSON export, **both sorted by user_id**, merge-joined one user at
  a time. Nothing is held per population except counters, so memory is flat in
  the number of users. Lines are diffed as plain dicts (``validate=False``,
  the fast path) or validated as ``BillingHistory`` first (``validate=True``);
  the tests prove both give the same findings.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from pydantic import ValidationError

from core.canonical import BillingHistory
from core.db import utcnow
from core.errors import ReconciliationError
from reconciler.diff import Doc, diff_docs
from reconciler.invariants import PopulationTotals, UserCheck, check_user
from reconciler.report import Report, ReportBuilder, UserResult
from reconciler.rules import COLLECTIONS
from reconciler.view import comparable

#: user_id -> (legacy canonical history, raw legacy snapshot objects or None)
LoadLegacy = Callable[[str], tuple[BillingHistory, Mapping[str, Any] | None]]
#: user_id -> new system's canonical history
LoadNew = Callable[[str], BillingHistory]
#: user_id -> the legacy system's *current* history (a refetch), for billed_twice
LoadLegacyNow = Callable[[str], BillingHistory | None]


def reconcile_docs(
    legacy: Doc,
    new: Doc,
    *,
    raw: Mapping[str, Any] | None = None,
    legacy_now: Doc | None = None,
    cohort: str | None = None,
    since: datetime | None = None,
    keep_views: bool = False,
    checked_at: datetime | None = None,
) -> tuple[UserResult, UserCheck]:
    """Diff + invariants for one user over canonical JSON dicts."""
    diff = diff_docs(legacy, new, raw_legacy_fields=raw, since=since)
    check = check_user(legacy, new, legacy_now=legacy_now, since=since, cohort=cohort)
    result = UserResult(
        user_id=diff.user_id,
        cohort=cohort,
        differences=diff.differences,
        violations=check.violations,
        checked_at=checked_at or utcnow(),
        legacy_view=comparable(legacy, side="legacy") if keep_views else None,
        new_view=comparable(new, side="new") if keep_views else None,
    )
    return result, check


def reconcile_user(
    user_id: str,
    *,
    load_legacy: LoadLegacy,
    load_new: LoadNew,
    load_legacy_now: LoadLegacyNow | None = None,
    cohort: str | None = None,
    since: datetime | None = None,
    keep_views: bool = True,
) -> tuple[UserResult, UserCheck]:
    legacy, raw = load_legacy(user_id)
    new = load_new(user_id)
    now = load_legacy_now(user_id) if load_legacy_now else None
    for side, hist in (("legacy", legacy), ("new", new), ("legacy (current)", now)):
        if hist is not None and hist.user_id != user_id:
            raise ReconciliationError(
                f"{side} history loaded for user {user_id!r} belongs to {hist.user_id!r}",
                user_id=user_id,
            )
    return reconcile_docs(
        legacy.model_dump(mode="json"),
        new.model_dump(mode="json"),
        raw=raw,
        legacy_now=None if now is None else now.model_dump(mode="json"),
        cohort=cohort,
        since=since,
        keep_views=keep_views,
    )


def reconcile_users(
    user_ids: Iterable[str],
    *,
    load_legacy: LoadLegacy,
    load_new: LoadNew,
    scope_kind: str,
    scope_value: str | None,
    created_by: str,
    load_legacy_now: LoadLegacyNow | None = None,
    cohort_of: Callable[[str], str | None] | None = None,
    since_of: Callable[[str], datetime | None] | None = None,
    keep: int | None = None,
    keep_views: bool = True,
) -> Report:
    builder = ReportBuilder(Report(scope_kind, scope_value, created_by), keep=keep)
    totals = PopulationTotals()
    for uid in user_ids:
        cohort = cohort_of(uid) if cohort_of else None
        result, check = reconcile_user(
            uid,
            load_legacy=load_legacy,
            load_new=load_new,
            load_legacy_now=load_legacy_now,
            cohort=cohort,
            since=since_of(uid) if since_of else None,
            keep_views=keep_views,
        )
        builder.add(result)
        totals.add(cohort, check)
    builder.report.population_violations = totals.violations()
    return builder.report


# --- bulk, streaming ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LegacyEntry:
    """One user's legacy side in the bulk path (canonical JSON dict of the snapshot)."""

    history: Doc
    raw: Mapping[str, Any] | None = None
    cohort: str | None = None
    since: datetime | None = None
    legacy_now: Doc | None = None

    @property
    def user_id(self) -> str:
        return self.history["user_id"]  # type: ignore[no-any-return]

    @classmethod
    def from_json(cls, line: str | bytes) -> LegacyEntry:
        """A stored-snapshot line: ``{"history", "raw"?, "cohort"?, "since"?, "legacy_now"?}``.

        orjson, not json: parsing is half the bulk path's time and orjson parses these
        lines about 3x faster (measured in bench/reconcile_throughput.py)."""
        data = orjson.loads(line)
        since = data.get("since")
        return cls(
            history=data["history"],
            raw=data.get("raw"),
            cohort=data.get("cohort"),
            since=datetime.fromisoformat(since) if since else None,
            legacy_now=data.get("legacy_now"),
        )


@dataclass(slots=True)
class StreamStats:
    users: int = 0
    skipped_new_only: int = 0
    new_lines: int = 0


def _canonical(doc: Doc, *, validate: bool, where: str) -> Doc:
    if not validate:
        return doc
    try:
        return BillingHistory.model_validate(doc).model_dump(mode="json")
    except ValidationError as exc:
        raise ReconciliationError(f"{where} is not a canonical billing history: {exc}") from exc


def _new_docs(
    lines: Iterable[str | bytes],
    map_new: Callable[[dict[str, Any]], Doc] | None,
    stats: StreamStats,
) -> Iterator[tuple[str, Doc]]:
    last: str | None = None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        stats.new_lines += 1
        try:
            data = orjson.loads(line)
            doc = map_new(data) if map_new else data
            uid = doc["user_id"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ReconciliationError(f"new export line {number} is not valid: {exc}") from exc
        if last is not None and uid <= last:
            raise ReconciliationError(
                f"new export line {number}: user {uid!r} after {last!r}; the export must be "
                "sorted by user_id with one line per user"
            )
        last = uid
        yield uid, doc


def _carries_legacy_ids(doc: Doc) -> bool:
    for key, _kind in COLLECTIONS:
        value = doc.get(key)
        recs = (value,) if key == "customer" and value else (value or ())
        if any(r.get("legacy_id") is not None for r in recs):
            return True
    return False


def reconcile_stream(
    legacy: Iterable[LegacyEntry],
    new_lines: Iterable[str | bytes],
    *,
    map_new: Callable[[dict[str, Any]], Doc] | None = None,
    validate: bool = False,
    keep_views: bool = False,
    totals: PopulationTotals | None = None,
    stats: StreamStats | None = None,
) -> Iterator[UserResult]:
    """Merge-join two user_id-sorted streams; yield one result per legacy user.

    New-only users (never on legacy) are skipped unless one of their records
    carries a legacy id, in which case they are diffed against an empty legacy
    side (every carried-over record is then ``extra``).
    """
    stats = stats if stats is not None else StreamStats()
    news = _new_docs(new_lines, map_new, stats)
    pending = next(news, None)
    last: str | None = None

    def one(entry_doc: Doc, new_doc: Doc, entry: LegacyEntry | None) -> UserResult:
        uid = entry_doc.get("user_id") or new_doc.get("user_id")
        ldoc = _canonical(entry_doc, validate=validate, where=f"legacy snapshot of {uid}")
        ndoc = _canonical(new_doc, validate=validate, where=f"new export of {uid}")
        try:
            result, check = reconcile_docs(
                ldoc,
                ndoc,
                raw=entry.raw if entry else None,
                legacy_now=entry.legacy_now if entry else None,
                cohort=entry.cohort if entry else None,
                since=entry.since if entry else None,
                keep_views=keep_views,
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ReconciliationError(f"user {uid}: record shape not canonical: {exc!r}") from exc
        if totals is not None:
            totals.add(result.cohort, check)
        stats.users += 1
        return result

    for entry in legacy:
        uid = entry.user_id
        if last is not None and uid <= last:
            raise ReconciliationError(f"legacy stream: user {uid!r} after {last!r}; must be sorted")
        last = uid
        while pending is not None and pending[0] < uid:
            yield from _new_only(pending, one, stats)
            pending = next(news, None)
        if pending is not None and pending[0] == uid:
            new_doc, pending = pending[1], next(news, None)
        else:
            new_doc = {"user_id": uid, "system": "new", "customer": None}
        yield one(entry.history, new_doc, entry)
    while pending is not None:
        yield from _new_only(pending, one, stats)
        pending = next(news, None)


def _new_only(
    pending: tuple[str, Doc],
    one: Callable[[Doc, Doc, LegacyEntry | None], UserResult],
    stats: StreamStats,
) -> Iterator[UserResult]:
    uid, doc = pending
    if _carries_legacy_ids(doc):
        yield one({"user_id": uid, "system": "legacy", "customer": None}, doc, None)
    else:
        stats.skipped_new_only += 1
