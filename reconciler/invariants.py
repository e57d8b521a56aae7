"""Invariants that must hold per user and across a population (pure: no I/O).

A field diff can be clean while money is still wrong in aggregate (an invoice
moved to another currency and back, a refund counted twice), and the worst
migration bug of all, billing someone twice or not at all, is not a field.

* ``billed_twice``: a billing subscription on both systems (needs the legacy
  side's *current* state: a refetch; the snapshot predates the cancel step);
* ``billed_by_neither``: the user had a billing subscription on legacy (per the
  snapshot) and has none on new, and none on legacy now when that is known;
* ``renewal_moved``: the new subscription's next renewal is not the legacy
  snapshot's (current_period_end, or trial_end while trialing);
* ``paid_sum`` / ``refund_sum``: per currency, paid invoices and refunds sum to
  the same amounts on both sides; ``cohort_paid_sum`` / ``cohort_refund_sum``
  the same per cohort label.

New-side records the new system created itself after the migration (no legacy
id, created at or after ``since``) are the new system's own business and are
left out of the sums, exactly as the diff leaves them out of "extra".
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from core.canonical import BillingHistory
from reconciler.diff import Doc, iso_second, to_second
from reconciler.rules import RECORD_TIME

BILLING_STATUSES = frozenset({"trialing", "active", "past_due", "unpaid"})


@dataclass(frozen=True, slots=True)
class InvariantViolation:
    invariant: str
    user_id: str | None
    cohort: str | None
    subject: str  # a record's legacy id, or a currency
    legacy_value: Any
    new_value: Any
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "invariant": self.invariant,
            "user_id": self.user_id,
            "cohort": self.cohort,
            "subject": self.subject,
            "legacy_value": self.legacy_value,
            "new_value": self.new_value,
            "message": self.message,
        }


@dataclass(slots=True)
class Totals:
    """Per-currency sums in minor units."""

    paid: dict[str, int] = field(default_factory=dict)
    refunded: dict[str, int] = field(default_factory=dict)

    def add(self, other: Totals) -> None:
        for mine, theirs in ((self.paid, other.paid), (self.refunded, other.refunded)):
            for cur, amount in theirs.items():
                mine[cur] = mine.get(cur, 0) + amount


@dataclass(frozen=True, slots=True)
class UserCheck:
    violations: tuple[InvariantViolation, ...]
    legacy: Totals
    new: Totals


def _billing(doc: Doc | None) -> list[Doc]:
    if doc is None:
        return []
    return [s for s in doc.get("subscriptions") or () if s.get("status") in BILLING_STATUSES]


def next_renewal(sub: Doc) -> int | None:
    """Seconds of the next renewal, mirroring ``Subscription.next_renewal_at``."""
    if sub.get("status") not in BILLING_STATUSES or sub.get("cancel_at_period_end"):
        return None
    if sub.get("status") == "trialing" and sub.get("trial_end"):
        return to_second(sub["trial_end"])
    return to_second(sub.get("current_period_end"))


def _in_scope(kind: str, rec: Doc, since: int | None) -> bool:
    """Carried-over records, and native ones from before the migration."""
    if rec.get("legacy_id") is not None or since is None:
        return True
    at = to_second(rec.get(RECORD_TIME[kind]))
    return at is None or at < since


def totals(doc: Doc | None, *, since: int | None = None) -> Totals:
    out = Totals()
    if doc is None:
        return out
    for inv in doc.get("invoices") or ():
        if inv.get("status") == "paid" and _in_scope("invoice", inv, since):
            out.paid[inv["currency"]] = out.paid.get(inv["currency"], 0) + inv.get("amount_paid", 0)
    for ref in doc.get("refunds") or ():
        if _in_scope("refund", ref, since):
            out.refunded[ref["currency"]] = out.refunded.get(ref["currency"], 0) + ref["amount"]
    return out


def compare_totals(
    legacy: Totals, new: Totals, *, user_id: str | None, cohort: str | None, prefix: str = ""
) -> list[InvariantViolation]:
    out: list[InvariantViolation] = []
    for name, a, b in (
        ("paid_sum", legacy.paid, new.paid),
        ("refund_sum", legacy.refunded, new.refunded),
    ):
        for cur in sorted(set(a) | set(b)):
            la, nb = a.get(cur, 0), b.get(cur, 0)
            if la != nb:
                who = f"user {user_id}" if user_id else f"cohort {cohort}"
                out.append(
                    InvariantViolation(
                        prefix + name,
                        user_id,
                        cohort,
                        cur,
                        la,
                        nb,
                        f"{who}: {name.replace('_', ' ')} in {cur} is {la} on legacy, {nb} on new",
                    )
                )
    return out


def check_user(
    snapshot: Doc,
    new: Doc,
    *,
    legacy_now: Doc | None = None,
    since: datetime | None = None,
    cohort: str | None = None,
) -> UserCheck:
    """Invariants for one user, over canonical JSON dicts (snapshot = legacy before cancel)."""
    uid = snapshot.get("user_id") or new.get("user_id")
    cut = None if since is None else int(since.timestamp())
    out: list[InvariantViolation] = []
    new_billing = _billing(new)
    legacy_billing_now = _billing(legacy_now)
    if new_billing and legacy_billing_now:
        out.append(
            InvariantViolation(
                "billed_twice",
                uid,
                cohort,
                ",".join(s["id"] for s in legacy_billing_now),
                [s["id"] for s in legacy_billing_now],
                [s["id"] for s in new_billing],
                f"user {uid} has billing subscriptions on both systems: cancel the legacy one",
            )
        )
    was_billing = _billing(snapshot)
    by_legacy_id: dict[str, Doc] = {}
    for sub in new.get("subscriptions") or ():
        if sub.get("legacy_id") is not None:
            by_legacy_id.setdefault(sub["legacy_id"], sub)
    if was_billing and not new_billing and not legacy_billing_now:
        canceled_later = cut is not None and all(
            (to_second((by_legacy_id.get(s["id"]) or {}).get("canceled_at")) or -1) >= cut
            for s in was_billing
        )
        if not canceled_later:
            out.append(
                InvariantViolation(
                    "billed_by_neither",
                    uid,
                    cohort,
                    ",".join(s["id"] for s in was_billing),
                    [s["id"] for s in was_billing],
                    [],
                    f"user {uid} was billed on legacy and is billed by neither system now",
                )
            )
    for sub in was_billing:
        out.extend(_renewal(uid, cohort, sub, by_legacy_id.get(sub["id"]), cut))
    legacy_totals, new_totals = totals(snapshot), totals(new, since=cut)
    out.extend(compare_totals(legacy_totals, new_totals, user_id=uid, cohort=cohort))
    return UserCheck(tuple(out), legacy_totals, new_totals)


def _renewal(
    uid: str | None, cohort: str | None, legacy: Doc, new: Doc | None, cut: int | None
) -> list[InvariantViolation]:
    expected = next_renewal(legacy)
    if expected is None or new is None:  # a missing subscription is the diff's finding
        return []
    got = next_renewal(new)
    if got == expected:
        return []
    if got is not None and (to_second(new.get("current_period_start")) or 0) >= expected:
        return []  # renewed on the new system since: the date moved on legitimately
    canceled = to_second(new.get("canceled_at"))
    if got is None and cut is not None and canceled is not None and canceled >= cut:
        return []  # the user canceled on the new system after the migration
    return [
        InvariantViolation(
            "renewal_moved",
            uid,
            cohort,
            legacy["id"],
            iso_second(expected),
            iso_second(got),
            f"user {uid}: subscription {legacy['id']} renews at {iso_second(got)} on new, "
            f"legacy would have renewed at {iso_second(expected)}",
        )
    ]


def check_histories(
    snapshot: BillingHistory,
    new: BillingHistory,
    *,
    legacy_now: BillingHistory | None = None,
    since: datetime | None = None,
    cohort: str | None = None,
) -> UserCheck:
    return check_user(
        snapshot.model_dump(mode="json"),
        new.model_dump(mode="json"),
        legacy_now=None if legacy_now is None else legacy_now.model_dump(mode="json"),
        since=since,
        cohort=cohort,
    )


class PopulationTotals:
    """Per-cohort money sums, folded user by user (memory: cohorts x currencies)."""

    def __init__(self) -> None:
        self._legacy: dict[str, Totals] = defaultdict(Totals)
        self._new: dict[str, Totals] = defaultdict(Totals)

    def add(self, cohort: str | None, check: UserCheck) -> None:
        label = cohort or ""
        self._legacy[label].add(check.legacy)
        self._new[label].add(check.new)

    def violations(self) -> list[InvariantViolation]:
        out: list[InvariantViolation] = []
        for label in sorted(set(self._legacy) | set(self._new)):
            out.extend(
                compare_totals(
                    self._legacy[label],
                    self._new[label],
                    user_id=None,
                    cohort=label or None,
                    prefix="cohort_",
                )
            )
        return out

    def as_dict(self) -> dict[str, Mapping[str, Mapping[str, int]]]:
        return {
            label: {
                "legacy_paid": self._legacy[label].paid,
                "new_paid": self._new[label].paid,
                "legacy_refunded": self._legacy[label].refunded,
                "new_refunded": self._new[label].refunded,
            }
            for label in sorted(set(self._legacy) | set(self._new))
        }


def population_violations(
    checks: Iterable[tuple[str | None, UserCheck]],
) -> list[InvariantViolation]:
    acc = PopulationTotals()
    for cohort, check in checks:
        acc.add(cohort, check)
    return acc.violations()
