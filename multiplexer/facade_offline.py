"""Offline money (bank transfers) of ``BillingMux``: recorded once per reference.

Each record goes through the ledger (``multiplexer.offline_ledger``): decided in one
transaction under a unique (user, kind, reference) *before* the backend write, sent
with the row's idempotency key and body, closed with its audit entry. An identical
retry (with or without an Idempotency-Key) is a replay, answered before the target
checks (a refund that took the whole payment replays too); the same reference with
other details, or the caller's key on another reference, is a 422; a row whose backend
answer was lost is re-sent by the next identical request or by ``recover_offline``
(``twinbill`` beat / CLI), and the backend replays it.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from core.canonical import Payment, Refund
from core.db import utcnow
from core.errors import BackendRejected, InvalidInput, NotFound
from core.money import Money
from multiplexer import guards, offline_ledger
from multiplexer.backends.base import UserRef
from multiplexer.facade_base import MuxBase

if TYPE_CHECKING:
    from multiplexer.backends.base import BillingBackend
    from multiplexer.cache import RouteInfo


def derived_key(*parts: str) -> str:
    """A stable idempotency key from the facts that make an operation unique."""
    return "tb-" + hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:40]


def _require_reference(reference: str | None) -> str:
    ref = (reference or "").strip()
    if not ref:
        raise InvalidInput("a reference (e.g. the bank transaction id) is required")
    if len(ref) > 120:
        raise InvalidInput("reference is longer than 120 characters")
    return ref


class OfflineMoneyMixin(MuxBase):
    def record_offline_payment(
        self,
        user_id: str,
        amount: Money,
        *,
        reference: str,
        paid_at: datetime | None,
        actor: str,
        invoice_id: str | None = None,
        note: str | None = None,
        idempotency_key: str | None = None,
    ) -> Payment:
        """``paid_at=None``: now (filled once, when the record is decided)."""
        return self._record(  # type: ignore[return-value]
            "payment", user_id, amount, reference, paid_at, invoice_id, note, actor,
            idempotency_key,
        )  # fmt: skip

    def record_offline_refund(
        self,
        user_id: str,
        amount: Money,
        *,
        reference: str,
        refunded_at: datetime | None,
        actor: str,
        payment_id: str | None = None,
        reason: str | None = None,
        idempotency_key: str | None = None,
    ) -> Refund:
        return self._record(  # type: ignore[return-value]
            "refund", user_id, amount, reference, refunded_at, payment_id, reason, actor,
            idempotency_key,
        )  # fmt: skip

    def _record(
        self,
        kind: str,
        user_id: str,
        amount: Money,
        reference: str,
        at: datetime | None,
        target_id: str | None,
        note: str | None,
        actor: str,
        idempotency_key: str | None,
    ) -> Payment | Refund:
        reference = _require_reference(reference)
        info = self._writable(user_id)
        self._check_money(info, amount)
        backend, ref = self._backend(info), self._ref(info)
        fields = {
            "amount": amount.amount, "currency": amount.currency, "reference": reference,
            "at": at, "target_id": target_id, "note": note,
        }  # fmt: skip
        request_hash = offline_ledger.client_hash(kind, fields)
        # a replay answers what the first request did: the first refund may have taken the
        # whole payment, so the target checks (made then) are not made again; other
        # details under the same reference are refused here, before anything is sent
        entry = offline_ledger.earlier(
            self._sessions, kind, user_id, reference, request_hash, idempotency_key=idempotency_key
        )
        if entry is None:
            if target_id is not None:
                self._check_target(kind, info, backend, ref, target_id, amount, actor)
            entry = offline_ledger.decide(
                self._sessions,
                kind=kind,
                user_id=user_id,
                reference=reference,
                system=info.system,
                amount=amount.amount,
                currency=amount.currency,
                happened_at=at or utcnow(),
                target_id=target_id,
                note=note,
                request_hash=request_hash,
                idempotency_key=idempotency_key
                or derived_key(f"offline-{kind}", user_id, reference),
                actor=actor,
            )
        if entry.status == "recorded" and entry.record_id:
            earlier = self._find_recorded(kind, backend, ref, entry.record_id)
            if earlier is not None:
                return earlier
        return self._send(kind, backend, ref, entry, amount, reference, target_id, note, actor)

    def _check_target(
        self,
        kind: str,
        info: RouteInfo,
        backend: BillingBackend,
        ref: UserRef,
        target_id: str,
        amount: Money,
        actor: str,
    ) -> None:
        """The invoice (payment) or payment (refund) is the user's own; a refund fits in
        what is left of the payment."""
        refuse = self._refuser(info, actor)
        if kind == "payment":
            guards.own_invoice(
                backend, ref, info, target_id, refuse=refuse, attempted="offline_payment"
            )
            return
        paid = guards.own_payment(
            backend, ref, info, target_id, refuse=refuse, attempted="offline_refund"
        )
        guards.refundable(paid, amount)

    @staticmethod
    def _find_recorded(
        kind: str, backend: BillingBackend, ref: UserRef, record_id: str
    ) -> Payment | Refund | None:
        if kind == "payment":
            return next((p for p in backend.list_payments(ref) if p.id == record_id), None)
        return None  # refunds have no list of their own: re-sent, and the backend replays

    def _send(
        self,
        kind: str,
        backend: BillingBackend,
        ref: UserRef,
        entry: offline_ledger.Entry,
        amount: Money,
        reference: str,
        target_id: str | None,
        note: str | None,
        actor: str,
    ) -> Payment | Refund:
        try:
            result: Payment | Refund
            if kind == "payment":
                result = backend.record_offline_payment(
                    ref, amount, reference=reference, paid_at=entry.happened_at,
                    invoice_id=target_id, note=note, idempotency_key=entry.idempotency_key,
                )  # fmt: skip
            else:
                result = backend.record_offline_refund(
                    ref, amount, reference=reference, refunded_at=entry.happened_at,
                    payment_id=target_id, reason=note, idempotency_key=entry.idempotency_key,
                )  # fmt: skip
        except (BackendRejected, NotFound, InvalidInput):
            if entry.status == "pending":
                offline_ledger.forget(self._sessions, entry.id)  # refused: nothing written
            raise
        # anything else (timeout, 5xx, a crash) leaves the row pending: the answer may be lost
        after: dict[str, Any] = {
            kind: result.id, "amount": amount.amount, "currency": amount.currency,
            "reference": reference,
            ("paid_at" if kind == "payment" else "refunded_at"): entry.happened_at.date()
            .isoformat(),
        }  # fmt: skip
        offline_ledger.recorded(
            self._sessions, entry.id, result.id, actor=actor, after=after, reason=note
        )
        return result

    def recover_offline(self, *, older_than: timedelta = timedelta(minutes=5)) -> dict[str, int]:
        """Re-send every offline record whose backend answer was lost (still ``pending``
        after ``older_than``), with its own key and body: the backend replays or records."""
        done = failed = 0
        for row in offline_ledger.pending(self._sessions, older_than=utcnow() - older_than):
            try:
                info = self._writable(row.user_id)
                entry = offline_ledger.Entry(
                    row.id, row.status, row.idempotency_key, row.happened_at, None, row.system,
                    fresh=False,
                )  # fmt: skip
                self._send(
                    row.kind, self._backend(info), self._ref(info), entry,
                    Money(row.currency, row.amount), row.reference, row.target_id, row.note,
                    row.actor,
                )  # fmt: skip
                done += 1
            except Exception:  # noqa: BLE001 - one stuck row must not stop the others
                failed += 1
        return {"recovered": done, "failed": failed}
