"""Inventory facets: what a legacy user's billing looks like, read from the data itself.

The one definition of the facet set. ``twinbill users sync`` computes them per user
(``compute``) from the canonical legacy history (so both Stripe dialects read the
same, through the adapter's mapping) plus the few raw features the canonical model
has no field for (``LegacyFeatures``: the adapter fills them in). Cohort filters
(``--where``), ``--stratify`` and the readiness report read them back; unknown
fields and unparsable values are refused here (``parse_where``), not silently
matched against nobody.

Facets are a cache of legacy data, not routing state: refreshing them never bumps
a route's version. ``renewal_days`` is not stored (it would change every day): it is
derived from ``next_renewal_at`` when read (``live``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from core.canonical import BillingHistory, InvoiceStatus, SubscriptionStatus
from core.errors import InvalidInput

Kind = Literal["text", "bool", "count"]


@dataclass(frozen=True, slots=True)
class Facet:
    name: str
    kind: Kind
    help: str
    #: counts: lower bounds of the report's buckets (``(0, 1, 2)`` -> 0, 1, 2+)
    edges: tuple[int, ...] = (0, 1, 2)


@dataclass(frozen=True, slots=True)
class LegacyFeatures:
    """What the canonical model does not carry, read by the legacy adapter from its raw
    objects: the default payment method's type, automatic tax, one-off items waiting
    for the next invoice."""

    payment_method: str | None = None  # card | sepa_debit | ... | None: no payment method
    automatic_tax: bool = False
    pending_items: int = 0


_ALL: tuple[Facet, ...] = (
    Facet("currency", "text", "billing currency (ISO 4217)"),
    Facet("subscriptions", "count", "subscriptions that still bill", (0, 1, 2, 3)),
    Facet("status", "text", "status of the billing subscriptions (canceled / none if none)"),
    Facet("interval", "text", "billing interval of the subscriptions (mixed if several)"),
    Facet("trial", "bool", "a subscription is in its trial"),
    Facet("paused", "bool", "collection is paused on a subscription"),
    Facet("scheduled_cancel", "text", "none | period_end | dated (Stripe cancel_at)"),
    Facet("dunning", "text", "none | open_invoice | past_due | unpaid"),
    Facet("discounts", "count", "discounts (coupons) applied"),
    Facet("tax", "text", "none | exclusive | inclusive | mixed | automatic"),
    Facet("payment_method", "text", "type of the default payment method (none if none)"),
    Facet("invoices", "count", "invoices in the legacy history", (0, 1, 2, 6, 25)),
    Facet("refunds", "count", "refunds in the legacy history"),
    Facet("credit_balance", "count", "customer credit in minor units (negative: owed)", (0, 1)),
    Facet("pending_items", "count", "one-off invoice items waiting for the next invoice"),
    Facet("seats", "count", "largest subscription quantity", (1, 2, 10)),
    Facet("prorations", "bool", "an invoice carries proration lines"),
    Facet("renewal_days", "count", "whole days to the next renewal", (0, 1, 3, 8, 31)),
    Facet("complexity", "count", "how much can go wrong: 0 is a plain subscription", (0, 1, 3, 6)),
    Facet("readable", "bool", "the legacy mapping could read every object"),
    Facet("preflight", "text", "ok, or why preflight would defer the user (as of the sync)"),
)
FACETS: Mapping[str, Facet] = {f.name: f for f in _ALL}
NAMES: tuple[str, ...] = tuple(FACETS)
#: Stored beside the facets, not filters: the raw inputs of ``live`` and the report.
EXTRA_KEYS = ("next_renewal_at", "problem")

#: Points per feature; ``complexity`` is their sum (a plain monthly card subscription is 0).
WEIGHTS: Mapping[str, int] = {
    "extra_subscription": 2,
    "trial": 1,
    "paused": 3,
    "scheduled_cancel": 2,
    "dunning": 3,
    "discount": 1,
    "tax": 1,
    "payment_method": 1,
    "refunds": 1,
    "credit_balance": 1,
    "pending_items": 2,
    "seats": 1,
    "prorations": 1,
    "unreadable": 5,
}


def _status(history: BillingHistory) -> str:
    live = history.billing_subscriptions
    if live:
        return "+".join(sorted({s.status.value for s in live}))
    if any(s.status is SubscriptionStatus.CANCELED for s in history.subscriptions):
        return "canceled"
    return history.subscriptions[-1].status.value if history.subscriptions else "none"


def _interval(history: BillingHistory) -> str:
    values = {
        f"{i.interval_count}{i.interval.value}" if i.interval_count > 1 else i.interval.value
        for s in history.billing_subscriptions
        for i in s.items
    }
    return values.pop() if len(values) == 1 else ("mixed" if values else "none")


def _paused(history: BillingHistory) -> bool:
    return any(
        s.status is SubscriptionStatus.PAUSED
        or (s.status.billing and getattr(s, "collection_paused", None))
        for s in history.subscriptions
    )


def _dunning(history: BillingHistory) -> str:
    statuses = {s.status for s in history.subscriptions}
    if SubscriptionStatus.UNPAID in statuses:
        return "unpaid"
    if SubscriptionStatus.PAST_DUE in statuses:
        return "past_due"
    if any(i.status is InvoiceStatus.OPEN and i.amount_due > 0 for i in history.invoices):
        return "open_invoice"
    return "none"


def _scheduled_cancel(history: BillingHistory) -> str:
    live = history.billing_subscriptions
    if any(getattr(s, "cancel_at", None) for s in live):
        return "dated"
    if any(s.cancel_at_period_end for s in live):
        return "period_end"
    return "none"


def _tax(history: BillingHistory, features: LegacyFeatures) -> str:
    if features.automatic_tax:
        return "automatic"
    kinds = {
        "inclusive" if r.inclusive else "exclusive"
        for s in history.billing_subscriptions
        for r in s.tax_rates
    }
    if not kinds and any(i.tax for i in history.invoices):
        kinds.add("exclusive")
    return kinds.pop() if len(kinds) == 1 else ("mixed" if kinds else "none")


def compute(
    history: BillingHistory | None,
    features: LegacyFeatures,
    *,
    currency: str | None = None,
    problem: str | None = None,
) -> dict[str, Any]:
    """Every facet of one user; ``history`` None means the mapping could not read the
    user's objects (``problem`` says why): only what the customer says is known then."""
    if history is None:
        facets: dict[str, Any] = {
            "currency": currency,
            "readable": False,
            "problem": problem,
            "payment_method": features.payment_method or "none",
            "pending_items": features.pending_items,
        }
        facets["complexity"] = complexity(facets)
        return facets
    live = history.billing_subscriptions
    renewals = [r for r in (s.next_renewal_at for s in live) if r is not None]
    customer = history.customer
    facets = {
        "currency": customer.currency if customer else currency,
        "subscriptions": len(live),
        "status": _status(history),
        "interval": _interval(history),
        "trial": any(s.status is SubscriptionStatus.TRIALING for s in live),
        "paused": _paused(history),
        "scheduled_cancel": _scheduled_cancel(history),
        "dunning": _dunning(history),
        "discounts": len(history.discounts),
        "tax": _tax(history, features),
        "payment_method": features.payment_method or "none",
        "invoices": len(history.invoices),
        "refunds": len(history.refunds),
        "credit_balance": -customer.balance if customer else 0,
        "pending_items": features.pending_items,
        "seats": max((i.quantity for s in live for i in s.items), default=0),
        "prorations": any(line.proration for i in history.invoices for line in i.lines),
        "readable": True,
        "next_renewal_at": min(renewals).isoformat() if renewals else None,
    }
    facets["complexity"] = complexity(facets)
    return facets


def complexity(f: Mapping[str, Any]) -> int:
    w = WEIGHTS
    points = [
        w["extra_subscription"] * max((f.get("subscriptions") or 0) - 1, 0),
        w["trial"] * bool(f.get("trial")),
        w["paused"] * bool(f.get("paused")),
        w["scheduled_cancel"] * (f.get("scheduled_cancel") not in (None, "none")),
        w["dunning"] * (f.get("dunning") not in (None, "none")),
        w["discount"] * (f.get("discounts") or 0),
        w["tax"] * (f.get("tax") not in (None, "none")),
        w["payment_method"] * (f.get("payment_method") != "card"),
        w["refunds"] * bool(f.get("refunds")),
        w["credit_balance"] * bool(f.get("credit_balance")),
        w["pending_items"] * bool(f.get("pending_items")),
        w["seats"] * ((f.get("seats") or 0) > 1),
        w["prorations"] * bool(f.get("prorations")),
        w["unreadable"] * (f.get("readable") is False),
    ]
    return sum(points)


def live(facets: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """Stored facets plus the ones that move with the clock (``renewal_days``)."""
    out = dict(facets)
    renewal = facets.get("next_renewal_at")
    if renewal:
        out["renewal_days"] = max((datetime.fromisoformat(renewal) - now).days, 0)
    else:
        out.setdefault("renewal_days", None)
    return out


# --- filters -------------------------------------------------------------------

_TRUE, _FALSE = {"true", "yes", "1", "y"}, {"false", "no", "0", "n"}


def _facet(name: str, option: str) -> Facet:
    try:
        return FACETS[name]
    except KeyError:
        raise InvalidInput(f"{option}: unknown facet {name!r}; known: {', '.join(NAMES)}") from None


def _check_value(facet: Facet, raw: str, option: str) -> None:
    v = raw.strip().lower()
    if facet.kind == "bool" and v not in _TRUE | _FALSE:
        raise InvalidInput(f"{option} {facet.name}={raw}: expected true or false")
    if facet.kind == "count" and v != "none":
        lo, sep, hi = v.rstrip("+").partition("-") if not v.startswith("-") else (v, "", "")
        try:
            int(lo)
            if sep:
                int(hi)
        except ValueError:
            raise InvalidInput(
                f"{option} {facet.name}={raw}: expected a number, N+ or A-B"
            ) from None


def parse_where(clauses: Iterable[str], option: str = "--where") -> dict[str, set[str]]:
    """``["trial=true", "currency=eur,usd", "invoices=2+"]`` -> filters, checked."""
    filters: dict[str, set[str]] = {}
    for clause in clauses:
        key, sep, values = clause.partition("=")
        if not sep or not values.strip():
            raise InvalidInput(f"{option} {clause!r}: expected FACET=v1,v2")
        facet = _facet(key.strip(), option)
        wanted = {v.strip() for v in values.split(",") if v.strip()}
        for v in wanted:
            _check_value(facet, v, option)
        filters[facet.name] = filters.get(facet.name, set()) | wanted
    return filters


def check_fields(fields: Sequence[str], option: str = "--stratify") -> None:
    for name in fields:
        _facet(name, option)


def _count_match(value: Any, wanted: str) -> bool:
    if not isinstance(value, int) or isinstance(value, bool):
        return False
    if wanted.endswith("+"):
        return value >= int(wanted[:-1])
    lo, sep, hi = wanted.partition("-") if not wanted.startswith("-") else (wanted, "", "")
    return int(lo) <= value <= int(hi) if sep else value == int(lo)


def matches(name: str, value: Any, wanted: Iterable[str]) -> bool:
    """Does a facet value satisfy one of the wanted values (``parse_where``'s)?"""
    facet = FACETS.get(name)
    for raw in wanted:
        w = raw.strip().lower()
        if value is None:
            if w == "none":
                return True
            continue
        if facet is None or facet.kind == "text":
            if str(value).lower() == w:
                return True
        elif facet.kind == "bool":
            if bool(value) == (w in _TRUE):
                return True
        elif w != "none" and _count_match(value, w):
            return True
    return False


def bucket(name: str, value: Any) -> str:
    """The report's bucket for a value: counts grouped by the facet's edges."""
    facet = FACETS.get(name)
    if value is None:
        return "none"
    if facet is None or facet.kind == "text":
        return str(value)
    if facet.kind == "bool":
        return "yes" if value else "no"
    edges = facet.edges
    if value < edges[0]:
        return f"<{edges[0]}"
    for lo, hi in zip(edges, edges[1:], strict=False):
        if value < hi:
            return str(lo) if hi == lo + 1 else f"{lo}-{hi - 1}"
    return f"{edges[-1]}+"
