"""An in-process Stripe double at the pinned API version, behind the SDK's HTTP client seam.

``StripeDouble`` is a ``stripe.HTTPClient``: a real ``stripe.StripeClient`` talks to it
through the SDK's whole request path (encoding, idempotency headers, errors), so the
backend under test is exactly the one production runs. Objects are the current-shape
ones of ``shapes`` (Stripe's published examples + the SDK's fields); tests seed
configurations with ``put`` and the double answers reads consistently after writes:

* writes are recorded (``writes``) and replayed under the same ``Idempotency-Key``
  (Stripe keeps the first answer, errors included);
* subscribing cuts and pays the first invoice (charge + invoice payment); plan changes
  with ``always_invoice`` invoice the proration; cancel ends the subscription (keeping
  its ``cancellation_details``, storing the ``customer.subscription.deleted`` event
  Stripe would send) and refuses a canceled one with 404, as Stripe does;
* offline money: Payment Records attached to invoices move ``amount_paid`` /
  ``amount_remaining`` / ``amount_paid_off_stripe`` (includable, as on Stripe);
  credit notes with ``out_of_band_amount`` touch neither the invoice nor the balance;
  balance transactions move ``customer.balance``;
* lists page (``limit``/``starting_after``), ``/v1/invoice_payments`` included; a list
  without its ``customer`` (or ``charge``, ``invoice``) filter is account-wide;
* every write it models records the event Stripe sends for it (``EVENTS``: type and
  the object it carries), stamped by the wall clock (``clock``: twinbill compares event
  times with its own), listed by ``GET /v1/events`` (``created``, ``type``, paging).

What it does not model is refused with a 400 naming the route, never guessed.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import stripe
from stripe._http_client import HTTPClient

from tests.stripe_current import shapes
from tests.stripe_current.conformance import decode

Handler = Callable[..., Any]


class Refused(Exception):
    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code = status, code


#: the fields a list is filtered by (``?customer=``, ``?charge=``, ``?invoice=``)
OWNERS = ("customer", "charge", "invoice")


def client_for(double: StripeDouble) -> stripe.StripeClient:
    return stripe.StripeClient("sk_test_double", http_client=double, max_network_retries=0)


class StripeDouble(HTTPClient):
    name = "stripe-double"

    def __init__(self) -> None:
        super().__init__()
        self.objects: dict[str, dict[str, dict[str, Any]]] = {}
        #: (kind, field, value) -> {id: object}: the lists Stripe filters by an owner
        #: (``customer``, ``charge``, ``invoice``) read one owner's objects, not a scan
        #: of the whole account per request (a 10,000-customer account crawled)
        self._owners: dict[tuple[str, str, Any], dict[str, dict[str, Any]]] = {}
        self.writes: list[tuple[str, str, dict[str, Any]]] = []
        self.reads: list[str] = []  # "GET /path" of every read, in order
        self.log: list[tuple[int, str]] = []  # (thread, "METHOD /path") of every request
        self.requests: list[str] = []  # "METHOD /path" of every request, replays included
        self.replies: dict[str, tuple[str, int]] = {}
        self.now = shapes.T0
        self._ids = itertools.count(1)
        self.fail_next: dict[str, int] = {}  # route -> HTTP status to answer once
        self.clock: Callable[[], float] = time.time  # event timestamps (real time)
        self.fail_after: dict[str, int] = {}  # route -> status to answer once, *after* doing it
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []
        from tests.stripe_current import double_routes

        double_routes.register(self)

    # -- store ----------------------------------------------------------------------
    def put(self, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
        store = self.objects.setdefault(kind, {})
        old = store.get(obj["id"])
        for field in OWNERS:
            if old is not None:
                self._owners.get((kind, field, old.get(field)), {}).pop(obj["id"], None)
            if obj.get(field) is not None:
                self._owners.setdefault((kind, field, obj[field]), {})[obj["id"]] = obj
        store[obj["id"]] = obj
        return obj

    def get(self, kind: str, oid: str) -> dict[str, Any]:
        try:
            return self.objects[kind][oid]
        except KeyError:
            raise Refused(404, f"No such {kind}: '{oid}'", "resource_missing") from None

    def all(self, kind: str) -> list[dict[str, Any]]:
        return list(self.objects.get(kind, {}).values())

    def owned(self, kind: str, params: dict[str, Any], field: str = "customer") -> list[Any]:
        """A list filtered by ``field`` when the request names it, else account-wide."""
        if field not in params:
            return self.all(kind)
        return self.of(kind, field, params[field])

    def of(self, kind: str, field: str, value: Any) -> list[dict[str, Any]]:
        """The objects of ``kind`` whose ``field`` (an owner in ``OWNERS``) is ``value``."""
        assert field in OWNERS, field
        found = self._owners.get((kind, field, value), {})
        # an owner changed in place (not through ``put``) must not hide or misfile one
        return [o for o in found.values() if o.get(field) == value]

    def new_id(self, prefix: str) -> str:
        return f"{prefix}_dbl{next(self._ids):06d}"

    def route(self, method: str, pattern: str) -> Callable[[Handler], Handler]:
        def deco(fn: Handler) -> Handler:
            entry = (method, re.compile(f"^{pattern}$"), fn)
            # literal paths first: /v1/invoices/create_preview is not /v1/invoices/{id}
            self._routes.insert(0, entry) if "(" not in pattern else self._routes.append(entry)
            return fn

        return deco

    # -- the HTTP seam ------------------------------------------------------------------
    def request(
        self, method: str, url: str, headers: Any, post_data: Any = None
    ) -> tuple[str, int, dict[str, str]]:
        parts = urlsplit(url)
        body = post_data.decode() if isinstance(post_data, bytes) else post_data or ""
        params = decode(body if method == "post" else parts.query)
        key = {k.lower(): v for k, v in (headers or {}).items()}.get("idempotency-key")
        self.requests.append(f"{method.upper()} {parts.path}")
        if method != "get" and key:
            replay_id = f"{method} {parts.path} {key}"
            if replay_id in self.replies:
                text, status = self.replies[replay_id]
                return text, status, {"request-id": "req_replay", "idempotent-replayed": "true"}
        self.log.append((threading.get_ident(), f"{method.upper()} {parts.path}"))
        if method == "get":
            self.reads.append(f"GET {parts.path}")
        text, status = self._answer(method, parts.path, params)
        if method != "get" and status == 200:
            self._emit(method, parts.path, json.loads(text))
        if method != "get":
            if status < 500 or key:
                self.writes.append((method.upper(), parts.path, params))
            if key:
                self.replies[f"{method} {parts.path} {key}"] = (text, status)
        return text, status, {"request-id": f"req_{next(self._ids)}"}

    def _answer(self, method: str, path: str, params: dict[str, Any]) -> tuple[str, int]:
        for m, pattern, fn in self._routes:
            found = pattern.match(path)
            if m == method and found:
                route = f"{method.upper()} {pattern.pattern[1:-1]}"
                injected = self.fail_next.pop(route, None)
                if injected:
                    return _error(injected, "injected failure"), injected
                try:
                    text = json.dumps(fn(params, *found.groups()))
                except Refused as exc:
                    return _error(exc.status, str(exc), exc.code), exc.status
                lost = self.fail_after.pop(route, None)  # done, but the answer is an error
                if not lost:
                    return text, 200
                self._emit(method, path, json.loads(text))  # it happened: Stripe tells
                return _error(lost, "injected failure after the write"), lost
        return _error(400, f"the double does not model {method.upper()} {path}"), 400

    def _emit(self, method: str, path: str, answer: dict[str, Any]) -> None:
        for m, pattern, kinds in EVENTS:
            if m == method and re.fullmatch(pattern, path):
                for kind, source in kinds:
                    obj = self.get(source, answer[source]) if source else answer
                    eid = self.new_id("evt")
                    self.put("event", shapes.event(eid, kind, obj, created=int(self.clock())))
                return

    def request_stream(self, method: str, url: str, headers: Any, post_data: Any = None) -> Any:
        raise NotImplementedError("streaming is not modelled")

    def close(self) -> None:
        pass


#: (method, path, events) of the writes the double models: each event's type and where
#: its object comes from ("": the answer; "customer" / "charge": the object the answer
#: names). No event: a read (``create_preview``), or a write Stripe does not announce.
EVENTS: tuple[tuple[str, str, tuple[tuple[str, str], ...]], ...] = (
    ("post", "/v1/customers", (("customer.created", ""),)),
    ("post", "/v1/customers/[^/]+", (("customer.updated", ""),)),
    ("post", "/v1/customers/[^/]+/balance_transactions", (("customer.updated", "customer"),)),
    ("post", "/v1/subscriptions", (("customer.subscription.created", ""),)),
    ("post", "/v1/subscriptions/[^/]+", (("customer.subscription.updated", ""),)),
    ("delete", "/v1/subscriptions/[^/]+", (("customer.subscription.deleted", ""),)),
    ("post", "/v1/invoices/[^/]+/attach_payment", (("invoice.updated", ""),)),
    ("post", "/v1/invoices/(?!create_preview)[^/]+", (("invoice.updated", ""),)),
    ("post", "/v1/refunds", (("refund.created", ""), ("charge.refunded", "charge"))),
    ("post", "/v1/credit_notes", (("credit_note.created", ""),)),
)


def _error(status: int, message: str, code: str | None = None) -> str:
    kind = "invalid_request_error" if status < 500 else "api_error"
    return json.dumps({"error": {"type": kind, "message": message, "code": code}})


def page(objs: list[dict[str, Any]], params: dict[str, Any], url: str) -> dict[str, Any]:
    """Stripe's list page: newest first, ``limit`` (default 10) and ``starting_after``."""
    ordered = sorted(objs, key=lambda o: (o.get("created") or 0, o["id"]), reverse=True)
    after = params.get("starting_after")
    if after:
        ids = [o["id"] for o in ordered]
        if after not in ids:
            raise Refused(400, f"starting_after {after} is not in this list")
        ordered = ordered[ids.index(after) + 1 :]
    limit = int(params.get("limit") or 10)
    return shapes.listed(copy.deepcopy(ordered[:limit]), url, len(ordered) > limit)
