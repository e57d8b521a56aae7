"""The new billing system over HTTP (the only module importing httpx for it).

The ``httpx.Client`` (base URL, bearer token, timeout) is built once by
``registry.build_new`` and passed in. Every request calls the throttle first;
every write sends ``Idempotency-Key``. Errors are translated at the boundary:
429 -> ``RateLimited(retry_after=Retry-After)``, timeouts/connection/5xx ->
``BackendUnavailable``, 404 -> ``NotFound``, other 4xx -> ``BackendRejected``,
keeping the service's ``{"error": {"type", "message", "fields"}}`` in the
exception's message and context so a failure names the record and field.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx

from core.canonical import (
    BillingHistory,
    Customer,
    Invoice,
    NextCharges,
    Payment,
    Plan,
    Refund,
    RefundMode,
    Subscription,
)
from core.errors import BackendError, BackendRejected, BackendUnavailable, NotFound, RateLimited
from core.money import Money
from multiplexer.backends import newbilling_mapping as nm
from multiplexer.backends.base import ImportResult, Throttle, UserRef, no_throttle
from multiplexer.backends.newbilling_preview import map_preview


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def error_from_response(response: httpx.Response, what: str) -> BackendError:
    status = response.status_code
    try:
        body = response.json().get("error") or {}
    except (ValueError, AttributeError):
        body = {}
    etype = body.get("type") or f"http_{status}"
    fields = body.get("fields") or []
    detail = "; ".join(f"{f.get('loc')}: {f.get('message')}" for f in fields if isinstance(f, dict))
    message = f"new {what}: {status} {etype}: {body.get('message') or response.reason_phrase}"
    if detail:
        message += f" ({detail})"
    ctx: dict[str, Any] = {"backend": "http", "status": status, "type": etype, "fields": fields}
    if status == 429:
        try:
            retry_after = float(response.headers.get("Retry-After", "1"))
        except ValueError:
            retry_after = 1.0
        return RateLimited(message, retry_after=retry_after, **ctx)
    if status >= 500:
        return BackendUnavailable(message, **ctx)
    if status == 404:
        return NotFound(message, **ctx)
    return BackendRejected(message, **ctx)


class HttpNewBackend:
    """``NewBillingBackend`` over the service's HTTP contract (docs/contract/)."""

    name = "http"

    def __init__(self, client: httpx.Client, throttle: Throttle = no_throttle) -> None:
        self.client = client
        self.throttle = throttle

    # -- plumbing ----------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        what: str,
        *,
        body: Any = None,
        key: str | None = None,
        params: dict[str, Any] | None = None,
    ) -> Any:
        self.throttle()
        headers = {"Idempotency-Key": key} if key else {}
        try:
            response = self.client.request(method, path, json=body, headers=headers, params=params)
        except httpx.TimeoutException as exc:
            raise BackendUnavailable(f"new {what}: timed out", backend=self.name) from exc
        except httpx.TransportError as exc:
            raise BackendUnavailable(f"new {what}: {exc}", backend=self.name) from exc
        if response.status_code >= 400:
            raise error_from_response(response, what)
        try:
            return response.json()
        except ValueError as exc:
            raise BackendRejected(
                f"new {what}: answer is not JSON", backend=self.name, status=response.status_code
            ) from exc

    def _write(self, method: str, path: str, what: str, body: Any, key: str) -> Any:
        return self._request(method, path, what, body=body, key=key)

    @staticmethod
    def _data(answer: Any, what: str) -> list[dict[str, Any]]:
        data = answer.get("data") if isinstance(answer, dict) else answer
        if not isinstance(data, list):
            raise BackendRejected(f"new {what}: expected a list under 'data'", backend="http")
        return data

    @staticmethod
    def _part(answer: Any, key: str) -> Any:
        """Some writes answer ``{"subscription": ..., "invoice": ...}``; others the object."""
        return answer[key] if isinstance(answer, dict) and key in answer else answer

    @staticmethod
    def _import(answer: Any) -> ImportResult:
        if not isinstance(answer, dict) or not {"id", "status", "user_id"} <= answer.keys():
            raise BackendRejected(
                f"import answer lacks id/status/user_id: {answer!r}", backend="http"
            )
        return ImportResult(
            id=answer["id"], status=answer["status"], user_id=answer["user_id"], raw=answer
        )

    # -- reads ---------------------------------------------------------------------

    def get_bundle(self, user_id: str) -> dict[str, Any]:
        return self._request("GET", f"/v1/users/{user_id}/bundle", "get bundle")  # type: ignore[no-any-return]

    def map_bundle(self, bundle: dict[str, Any]) -> BillingHistory:
        return nm.map_bundle(bundle)

    def get_history(self, ref: UserRef) -> BillingHistory:
        return self.map_bundle(self.get_bundle(ref.user_id))

    def list_subscriptions(self, ref: UserRef) -> list[Subscription]:
        answer = self._request("GET", f"/v1/users/{ref.user_id}/subscriptions", "list subs")
        return [nm.map_subscription(s) for s in self._data(answer, "list subscriptions")]

    def list_invoices(self, ref: UserRef) -> list[Invoice]:
        answer = self._request("GET", f"/v1/users/{ref.user_id}/invoices", "list invoices")
        return [nm.map_invoice(i) for i in self._data(answer, "list invoices")]

    def list_payments(self, ref: UserRef) -> list[Payment]:
        answer = self._request("GET", f"/v1/users/{ref.user_id}/payments", "list payments")
        return [nm.map_payment(p) for p in self._data(answer, "list payments")]

    def export(self) -> Iterator[dict[str, Any]]:
        """NDJSON, one bundle a line, streamed (a whole population does not fit in memory)."""
        self.throttle()
        try:
            with self.client.stream("GET", "/v1/export") as response:
                if response.status_code >= 400:
                    response.read()
                    raise error_from_response(response, "export")
                for line in response.iter_lines():
                    if line.strip():
                        yield json.loads(line)
        except httpx.TimeoutException as exc:
            raise BackendUnavailable("new export: timed out", backend=self.name) from exc
        except httpx.TransportError as exc:
            raise BackendUnavailable(f"new export: {exc}", backend=self.name) from exc

    # -- imports ---------------------------------------------------------------------

    def create_import(self, payload: dict[str, Any], *, idempotency_key: str) -> ImportResult:
        return self._import(
            self._write("POST", "/v1/imports", "create import", payload, idempotency_key)
        )

    def activate_import(self, import_id: str, *, idempotency_key: str) -> ImportResult:
        return self._import(
            self._write(
                "POST",
                f"/v1/imports/{import_id}/activate",
                "activate import",
                None,
                idempotency_key,
            )
        )

    def discard_import(self, import_id: str, *, idempotency_key: str) -> ImportResult:
        return self._import(
            self._write(
                "DELETE", f"/v1/imports/{import_id}", "discard import", None, idempotency_key
            )
        )

    def get_import(self, import_id: str) -> ImportResult:
        return self._import(self._request("GET", f"/v1/imports/{import_id}", "get import"))

    def preview_import(self, import_id: str) -> NextCharges:
        """What the (pending) import will charge at its first renewal, as the service says."""
        return map_preview(
            self._request("GET", f"/v1/imports/{import_id}/preview", "preview import")
        )

    def preview_user(self, user_id: str) -> NextCharges:
        """What the service will charge the user next, over every subscription it holds
        (the rollback's ``prove``: compared with the legacy re-creation's preview)."""
        path = f"/v1/users/{user_id}/preview"
        return map_preview(self._request("GET", path, "preview user"), endpoint=f"GET {path}")

    def rollback_import(
        self, import_id: str, *, rollback_id: str, idempotency_key: str
    ) -> ImportResult:
        """The rollback's pivot: every billing subscription of the user canceled now, no
        proration, no refund, marked as the rollback's (its events carry cause=rollback)."""
        return self._import(
            self._write(
                "POST",
                f"/v1/imports/{import_id}/rollback",
                "roll back import",
                {"rollback_id": rollback_id},
                idempotency_key,
            )
        )

    # -- writes ------------------------------------------------------------------------

    def create_customer(
        self,
        user_id: str,
        *,
        email: str | None,
        name: str | None,
        currency: str,
        idempotency_key: str,
    ) -> Customer:
        body = {"email": email, "name": name, "currency": currency.upper()}
        return nm.map_customer(
            self._write(
                "POST", f"/v1/users/{user_id}/customer", "create customer", body, idempotency_key
            )
        )

    def create_subscription(
        self,
        ref: UserRef,
        plan: Plan,
        *,
        quantity: int,
        trial_days: int | None,
        idempotency_key: str,
    ) -> Subscription:
        body = {
            "plan_code": plan.id,
            "product_name": plan.product_name,
            "unit_amount": plan.unit_amount,
            "currency": plan.currency,
            "interval": plan.interval.value,
            "interval_count": plan.interval_count,
            "quantity": quantity,
            "trial_days": trial_days,
        }
        answer = self._write(
            "POST",
            f"/v1/users/{ref.user_id}/subscriptions",
            "create subscription",
            body,
            idempotency_key,
        )
        return nm.map_subscription(self._part(answer, "subscription"))

    def change_plan(
        self, ref: UserRef, subscription_id: str, plan: Plan, *, prorate: bool, idempotency_key: str
    ) -> Subscription:
        body = {
            "plan_code": plan.id,
            "product_name": plan.product_name,
            "unit_amount": plan.unit_amount,
            "currency": plan.currency.upper(),
            "interval": plan.interval.value,
            "interval_count": plan.interval_count,
            "prorate": prorate,
        }
        answer = self._write(
            "POST",
            f"/v1/subscriptions/{subscription_id}/change-plan",
            "change plan",
            body,
            idempotency_key,
        )
        return nm.map_subscription(self._part(answer, "subscription"))

    def cancel_subscription(
        self,
        ref: UserRef,
        subscription_id: str,
        *,
        at_period_end: bool,
        refund: RefundMode,
        idempotency_key: str,
    ) -> Subscription:
        body = {"at_period_end": at_period_end, "refund": refund.value}
        answer = self._write(
            "POST",
            f"/v1/subscriptions/{subscription_id}/cancel",
            "cancel subscription",
            body,
            idempotency_key,
        )
        return nm.map_subscription(self._part(answer, "subscription"))

    def refund_payment(
        self,
        ref: UserRef,
        payment_id: str,
        *,
        amount: Money | None,
        reason: str | None,
        idempotency_key: str,
    ) -> Refund:
        body = {"amount": amount.amount if amount else None, "reason": reason}
        return nm.map_refund(
            self._write(
                "POST",
                f"/v1/payments/{payment_id}/refunds",
                "refund payment",
                body,
                idempotency_key,
            )
        )

    def record_offline_payment(
        self,
        ref: UserRef,
        amount: Money,
        *,
        reference: str,
        paid_at: datetime,
        invoice_id: str | None,
        note: str | None,
        idempotency_key: str,
    ) -> Payment:
        body = {
            "amount": amount.amount,
            "currency": amount.currency,
            "reference": reference,
            "paid_at": _iso(paid_at),
            "invoice_id": invoice_id,
            "note": note,
        }
        answer = self._write(
            "POST",
            f"/v1/users/{ref.user_id}/offline-payments",
            "record offline payment",
            body,
            idempotency_key,
        )
        return nm.map_payment(self._part(answer, "payment"))

    def record_offline_refund(
        self,
        ref: UserRef,
        amount: Money,
        *,
        reference: str,
        refunded_at: datetime,
        payment_id: str | None,
        reason: str | None,
        idempotency_key: str,
    ) -> Refund:
        body = {
            "amount": amount.amount,
            "currency": amount.currency,
            "reference": reference,
            "refunded_at": _iso(refunded_at),
            "payment_id": payment_id,
            "reason": reason,
        }
        answer = self._write(
            "POST",
            f"/v1/users/{ref.user_id}/offline-refunds",
            "record offline refund",
            body,
            idempotency_key,
        )
        return nm.map_refund(self._part(answer, "refund"))
