"""Cross-field checks on an import payload, beyond what the schema can express.

Pure (no I/O): it returns every problem at once, each with a ``loc`` such as
``invoices[2].lines[0].amount``, so one failed import names everything wrong with
it instead of one field per round trip.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

from .errors import FieldError
from .schemas import ImportIn


def check_import(p: ImportIn) -> list[FieldError]:
    errs: list[FieldError] = []
    cur = p.customer.currency

    def err(loc: str, message: str) -> None:
        errs.append(FieldError(loc, message))

    def same_currency(loc: str, value: str | None) -> None:
        if value is not None and value != cur:
            err(loc, f"currency {value} differs from the customer's currency {cur}")

    _check_duplicates(p, err)
    sub_ids = {s.external_id for s in p.subscriptions}
    inv_by_id = {i.external_id: i for i in p.invoices}
    pay_by_id = {pay.external_id: pay for pay in p.payments}

    for si, s in enumerate(p.subscriptions):
        same_currency(f"subscriptions[{si}].currency", s.currency)
        if s.status == "trialing" and s.trial_end is None:
            err(f"subscriptions[{si}].trial_end", "a trialing subscription needs trial_end")
        if s.current_period_end < s.current_period_start:
            err(f"subscriptions[{si}].current_period_end", "ends before current_period_start")
        seen_rates: set[str] = set()
        for ti, rate in enumerate(s.tax_rates):
            if rate.external_id in seen_rates:
                err(f"subscriptions[{si}].tax_rates[{ti}].external_id", "listed twice")
            seen_rates.add(rate.external_id)

    for di, d in enumerate(p.discounts):
        loc = f"discounts[{di}]"
        if d.subscription_external_id is not None and d.subscription_external_id not in sub_ids:
            err(
                f"{loc}.subscription_external_id",
                _unknown("subscription", d.subscription_external_id),
            )
        has_pct, has_amt = d.percent_off_bp is not None, d.amount_off is not None
        if has_pct == has_amt:
            err(loc, "exactly one of percent_off_bp or amount_off (+currency) must be set")
        if has_pct and not 1 <= (d.percent_off_bp or 0) <= 10000:
            err(f"{loc}.percent_off_bp", "must be 1..10000 basis points (12.5% = 1250)")
        if has_pct and d.currency is not None:
            err(f"{loc}.currency", "must be null for a percentage discount")
        if has_amt:
            if (d.amount_off or 0) < 1:
                err(f"{loc}.amount_off", "must be a positive amount in minor units")
            if d.currency is None:
                err(f"{loc}.currency", "is required with amount_off")
        same_currency(f"{loc}.currency", d.currency)
        if d.duration == "repeating" and not (d.duration_in_months or 0) >= 1:
            err(f"{loc}.duration_in_months", "a repeating discount needs duration_in_months >= 1")
        if d.duration != "repeating" and d.duration_in_months is not None:
            err(f"{loc}.duration_in_months", f"must be null for duration {d.duration!r}")

    for ii, inv in enumerate(p.invoices):
        loc = f"invoices[{ii}]"
        same_currency(f"{loc}.currency", inv.currency)
        if inv.subscription_external_id is not None and inv.subscription_external_id not in sub_ids:
            err(
                f"{loc}.subscription_external_id",
                _unknown("subscription", inv.subscription_external_id),
            )
        # Negative lines are credits: proration for unused time, or an adjustment such as an
        # invoice paid outside the billing system. Totals may go negative only through them.
        # A negative *invoice* is a credit note for unused time: it needs a proration line
        # (a negative invoice of plain adjustments alone is a data error, not a credit).
        has_credit = any(line.amount < 0 for line in inv.lines)
        has_proration = any(line.proration and line.amount < 0 for line in inv.lines)
        for name in ("subtotal", "total"):
            if getattr(inv, name) < 0 and not has_credit:
                err(f"{loc}.{name}", "may be negative only when the invoice has credit lines")
            elif getattr(inv, name) < 0 and not has_proration:
                err(
                    f"{loc}.{name}",
                    "a negative invoice needs a proration credit line (unused time)",
                )
        line_sum = sum(line.amount for line in inv.lines)
        if line_sum != inv.subtotal:
            err(f"{loc}.subtotal", f"lines add up to {line_sum}, not subtotal {inv.subtotal}")
        expected_total = inv.subtotal - inv.discount_total + inv.tax
        if expected_total != inv.total:
            err(
                f"{loc}.total",
                f"subtotal - discount_total + tax = {expected_total}, not total {inv.total}",
            )
        settled = inv.amount_paid + inv.amount_due + inv.balance_applied
        if settled != max(inv.total, 0):
            err(
                f"{loc}.amount_due",
                f"amount_paid + amount_due + balance_applied = {settled}, "
                f"must equal max(total, 0) = {max(inv.total, 0)}",
            )

    paid: dict[str, int] = defaultdict(int)
    for pi, pay in enumerate(p.payments):
        same_currency(f"payments[{pi}].currency", pay.currency)
        ref = pay.invoice_external_id
        if ref is None:
            continue
        if ref not in inv_by_id:
            err(f"payments[{pi}].invoice_external_id", _unknown("invoice", ref))
            continue
        if pay.status == "succeeded":
            paid[ref] += pay.amount
            ceiling = max(inv_by_id[ref].total, 0)
            if paid[ref] > ceiling:
                err(
                    f"payments[{pi}].amount",
                    f"succeeded payments for invoice {ref} add up to {paid[ref]}, "
                    f"more than its total {ceiling}",
                )

    refunded: dict[str, int] = defaultdict(int)
    for ri, ref_ in enumerate(p.refunds):
        same_currency(f"refunds[{ri}].currency", ref_.currency)
        pid = ref_.payment_external_id
        if pid not in pay_by_id:
            err(f"refunds[{ri}].payment_external_id", _unknown("payment", pid))
            continue
        refunded[pid] += ref_.amount
        if refunded[pid] > pay_by_id[pid].amount:
            err(
                f"refunds[{ri}].amount",
                f"refunds of payment {pid} add up to {refunded[pid]}, "
                f"more than the payment's {pay_by_id[pid].amount}",
            )
    return errs


def _unknown(kind: str, ref: str) -> str:
    return f"refers to {kind} {ref!r} which is not in this import"


def _check_duplicates(p: ImportIn, report: Callable[[str, str], None]) -> None:
    """External ids must be unique within their kind across the whole payload."""
    kinds: dict[str, list[tuple[str, str]]] = {
        "subscription": [
            (f"subscriptions[{i}]", s.external_id) for i, s in enumerate(p.subscriptions)
        ],
        "item": [
            (f"subscriptions[{i}].items[{j}]", it.external_id)
            for i, s in enumerate(p.subscriptions)
            for j, it in enumerate(s.items)
        ],
        "discount": [(f"discounts[{i}]", d.external_id) for i, d in enumerate(p.discounts)],
        "invoice": [(f"invoices[{i}]", v.external_id) for i, v in enumerate(p.invoices)],
        "line": [
            (f"invoices[{i}].lines[{j}]", li.external_id)
            for i, v in enumerate(p.invoices)
            for j, li in enumerate(v.lines)
        ],
        "payment": [(f"payments[{i}]", x.external_id) for i, x in enumerate(p.payments)],
        "refund": [(f"refunds[{i}]", r.external_id) for i, r in enumerate(p.refunds)],
    }
    for kind, entries in kinds.items():
        seen: dict[str, str] = {}
        for loc, ext in entries:
            if ext in seen:
                report(
                    f"{loc}.external_id",
                    f"duplicate {kind} external_id {ext!r} (also at {seen[ext]})",
                )
            else:
                seen[ext] = loc
