"""Talking to Stripe: throttle, SDK call, error translation, paging.

Split from ``backend`` so the backend reads as billing operations. Still
the only place (with ``backend``) that imports ``stripe``.

Stripe replays a saved *500* under the same idempotency key: a write that keeps
failing that way must be re-read and retried under a fresh key by the caller
(the migration engine's re-read-then-retry), never hammered here.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import stripe

from core.errors import BackendError, BackendRejected, BackendUnavailable, NotFound, RateLimited
from core.ratelimit import backoff_delay
from multiplexer.backends.base import Throttle
from multiplexer.backends.stripe.dialect import DIALECTS, DialectName


def translate(exc: stripe.StripeError, what: str) -> BackendError:
    """Stripe SDK error -> twinbill error, keeping status, code and retry hints."""
    status = exc.http_status
    headers = {k.lower(): v for k, v in (exc.headers or {}).items()}
    should_retry = headers.get("stripe-should-retry")
    ctx: dict[str, Any] = {
        "backend": "stripe",
        "status": status,
        "code": exc.code,
        "request_id": exc.request_id,
        "stripe_should_retry": should_retry,
    }
    message = f"legacy {what}: {exc.user_message or str(exc) or type(exc).__name__}"
    if isinstance(exc, stripe.RateLimitError) or status == 429:
        try:
            retry_after = float(headers.get("retry-after", 1.0))
        except ValueError:
            retry_after = 1.0
        return RateLimited(message, retry_after=retry_after, **ctx)
    if isinstance(exc, stripe.APIConnectionError) or status is None or status >= 500:
        return BackendUnavailable(message, **ctx)
    if should_retry == "true":  # e.g. 409 lock_timeout: Stripe says trying again helps
        return BackendUnavailable(message, **ctx)
    if status == 404:
        return NotFound(message, **ctx)
    return BackendRejected(message, param=getattr(exc, "param", None), **ctx)


def to_plain(obj: Any) -> dict[str, Any]:
    """stripe 16 objects are not dicts: JSON-ready plain data, recursively.

    ``to_dict`` turns the current API's ``*_decimal`` fields (``unit_amount_decimal``,
    ``pricing.unit_amount_decimal``, ``quantity_decimal``) into ``Decimal``, which no
    JSON column stores: they go back to the decimal strings Stripe sent.
    """
    plain = obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)
    return _jsonable(plain)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, Decimal):
        return str(value)
    return value


class StripeCalls:
    """One client, one throttle: every request, every page, goes through ``call``."""

    #: tries per request after a transient failure (5xx, timeout, 429); 1 = none here: a
    #: per-user read is retried whole by the saga's step. See ``retrying_reads``.
    read_attempts = 1

    def __init__(
        self,
        client: stripe.StripeClient,
        throttle: Throttle,
        page_size: int = 100,
        dialect: DialectName = "current",
    ) -> None:
        self.client = client
        self.throttle = throttle
        self.page_size = page_size
        self.dialect = dialect
        self.wire = DIALECTS[dialect]  # what this dialect sends (dialect.py)
        # catalogue objects (products) are shared by every customer of a plan: read once
        # per process, not once per snapshot (bounded; a restart re-reads them)
        self._products: dict[str, dict[str, Any]] = {}

    def retrying_reads(self, attempts: int = 4) -> StripeCalls:
        """The same calls, each retried (with backoff) after a transient failure: for a
        bulk read, hundreds of GETs in a row where one 500 must not throw away the whole
        read (measured at 1 % of requests failing: every 500-user bulk read was lost and
        the cohort read per user). Only reads go through it: a write's retry is the
        migration engine's re-read-then-retry."""
        twin = copy.copy(self)
        twin.read_attempts = attempts
        return twin

    def call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        attempt = 0
        while True:
            attempt += 1
            self.throttle()
            try:
                return fn(*args, **kwargs)
            except stripe.StripeError as exc:
                err = translate(exc, what)
                if attempt >= self.read_attempts or not isinstance(
                    err, (BackendUnavailable, RateLimited)
                ):
                    raise err from exc
            wait = err.retry_after if isinstance(err, RateLimited) else 0.0
            time.sleep(min(max(backoff_delay(attempt), wait), 10.0))

    def write(
        self,
        what: str,
        fn: Callable[..., Any],
        *args: Any,
        key: str,
        params: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        return to_plain(self.call(what, fn, *args, params or {}, {"idempotency_key": key}))

    def pages(
        self,
        what: str,
        fn: Callable[..., Any] | str,
        *args: Any,
        params: dict[str, Any] | None = None,
        page_size: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Every page, one throttled request each (not ``auto_paging_iter``: it can't throttle).

        ``fn`` is an SDK list method, or the path of a list read a page of JSON at a time
        (``raw_get``): the lists every snapshot reads, where the SDK's objects cost the
        client more than the server (a page of 100 invoices: ~250 ms of CPU to build
        ``StripeObject``s and turn them back into dicts, ~30–40 ms as JSON, the same
        dicts; at 100 requests/s one process could not keep up — bench/stripe_pages.py)."""
        base = dict(params or {}, limit=page_size or self.page_size)
        after: str | None = None
        while True:
            query = dict(base, starting_after=after) if after else base
            if isinstance(fn, str):
                page = self.call(what, self.raw_get, fn, query)
            else:
                page = to_plain(self.call(what, fn, *args, query))
            data = page.get("data") or []
            yield from data
            if not page.get("has_more") or not data:
                return
            after = data[-1]["id"]

    def raw_get(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
        """GET ``path`` through the client (same key, base, version, retries and errors as
        its typed methods), the answer as the JSON Stripe sent: no ``StripeObject``."""
        data: dict[str, Any] = self.client.raw_request("get", path, **params).data
        return data

    def upcoming_invoice(self, cid: str, sub_id: str) -> dict[str, Any] | None:
        """The server's preview of a subscription's next invoice; None when it has none.

        localstripe: ``GET /v1/invoices/upcoming`` (the SDK no longer has it: raw request).
        Current API: ``POST /v1/invoices/create_preview``. "No upcoming invoice" is 404 on
        localstripe and 400 ``invoice_upcoming_none`` on Stripe.
        """
        try:
            if self.wire.preview == "upcoming":
                response = self.call(
                    "upcoming invoice",
                    self.client.raw_request,
                    "get",
                    "/v1/invoices/upcoming",
                    customer=cid,
                    subscription=sub_id,
                )
                return to_plain(self.client.deserialize(response, api_mode="V1"))
            return to_plain(
                self.call(
                    "preview invoice",
                    self.client.v1.invoices.create_preview,
                    {"customer": cid, "subscription": sub_id},
                )
            )
        except NotFound:
            return None
        except BackendRejected as exc:
            if exc.context.get("code") == "invoice_upcoming_none":
                return None
            raise

    def subscription(self, sid: str) -> dict[str, Any]:
        v1 = self.client.v1
        return to_plain(self.call("retrieve subscription", v1.subscriptions.retrieve, sid))

    def newest_subscription(self, cid: str) -> list[dict[str, Any]]:
        page = to_plain(
            self.call(
                "list subscriptions",
                self.client.v1.subscriptions.list,
                {"customer": cid, "status": "all", "limit": 1},
            )
        )
        return list(page.get("data") or [])

    def product(self, pid: str) -> dict[str, Any]:
        if pid not in self._products:
            if len(self._products) >= PRODUCT_CACHE_SIZE:
                self._products.clear()
            v1 = self.client.v1
            self._products[pid] = to_plain(self.call("retrieve product", v1.products.retrieve, pid))
        return self._products[pid]


PRODUCT_CACHE_SIZE = 10_000
