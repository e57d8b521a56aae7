"""The legacy account read in bulk: account-wide list endpoints, grouped per customer.

``twinbill users sync`` needs every customer's billing shape, and a cohort every
member's snapshot, not one set of lists per customer (5–7+ requests each). Stripe
lists customers, subscriptions (``status=all``), invoices, charges, invoice items and
credit notes account-wide, 100 per page, so the whole account costs about
(objects / 100) requests per list. The lists, their expansions and how a customer's
objects are completed and shaped are ``snapshot``'s, shared with the per-user read:
a customer's ``objects`` here equal its per-user snapshot's (same content hash), and
are mapped by the same ``map_snapshot``.

What cannot be read account-wide is read per object as the per-user read does
(truncated embedded lists, invoice payments, coupons) or per customer (balance
transactions, only when ``per_customer``). Refunds of charges that do not embed them are
one account-wide pass. ``estimate`` says what a read costs against per-user reads,
so a small cohort in a big account is read per user.

Only ``LegacyFeatures`` are read from raw JSON here: the few things the canonical
model has no field for (payment-method type, automatic tax, pending items).
"""

from __future__ import annotations

import contextvars
import math
import threading
from collections import defaultdict
from collections.abc import Callable, Collection, Iterator, Mapping
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from core.canonical import BillingHistory
from core.errors import NotFound, TransformError
from multiplexer.backends.base import InventoryEntry, RawSnapshot, UserRef
from multiplexer.backends.stripe import snapshot
from multiplexer.backends.stripe.dialect import DialectName
from multiplexer.backends.stripe.fields import META_USER, metadata, ref_id
from multiplexer.backends.stripe.mapping import map_customer
from multiplexer.backends.stripe.transport import StripeCalls
from multiplexer.facets import LegacyFeatures

#: ``(list name, objects read so far)`` after every page
OnPage = Callable[[str, int], None]
#: ``(customer id, objects)`` as soon as one customer's objects are complete
OnCustomer = Callable[[str, dict[str, Any]], None]
#: charges with more than a page of refunds listed one by one; beyond, one account-wide list
REFUND_LISTS_PER_CHARGE = 10


@dataclass
class AccountLists:
    """Every account-wide list, read once: each customer's ``objects`` (``snapshot`` shape)."""

    customers: list[dict[str, Any]] = field(default_factory=list)
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: customers whose objects could not be completed (an object gone mid-read): the
    #: caller reads them per user (``snapshot.fetch``) or reports them
    failed: dict[str, str] = field(default_factory=dict)
    taken_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def total(self) -> int:
        return len(self.customers)


def _pages(
    calls: StripeCalls, name: str, fn: Any, params: dict[str, Any], on_page: OnPage | None
) -> Iterator[dict[str, Any]]:
    n = 0
    size = calls.page_size
    size = min(size, dict(calls.wire.page_caps).get(name, size))
    for obj in calls.pages(f"list {name}", fn, params=params, page_size=size):
        n += 1
        yield obj
        if on_page is not None and n % size == 0:
            on_page(name, n)
    if on_page is not None:
        on_page(name, n)


class _Stopped(Exception):
    """Another list of the same read failed: this one stops at its next page."""


def _read_lists(
    calls: StripeCalls,
    specs: list[tuple[str, Any, dict[str, Any]]],
    on_page: OnPage | None,
    keep: Callable[[str, dict[str, Any]], bool],
) -> list[list[dict[str, Any]]]:
    """Every list of ``specs`` read to its end, the lists side by side (one thread each);
    only the objects ``keep(list name, object)`` wants are held: a cohort's, not the whole
    account's (a 600,000-customer account's lists would not fit in a worker's memory).

    A list's pages follow each other (each cursor is the last page's last id), but the
    lists do not depend on one another: read one after another, the account's read took
    the sum of their round trips with one request in flight, so the first tenth of a
    500-user cohort used 0.72 of the budget (bench/migration_throughput.py --timeline).
    The rate limiter still paces every request. A list that fails stops the others at
    their next page, and its error is raised."""
    stop = threading.Event()

    def read(name: str, fn: Any, params: dict[str, Any]) -> list[dict[str, Any]]:
        objs: list[dict[str, Any]] = []
        try:
            for obj in _pages(calls, name, fn, params, on_page):
                if stop.is_set():
                    raise _Stopped
                if keep(name, obj):
                    objs.append(obj)
        except _Stopped:
            raise
        except BaseException:
            stop.set()
            raise
        return objs

    with ThreadPoolExecutor(len(specs), thread_name_prefix="bulk-list") as pool:
        # each thread logs with the task's context (its task id), as the caller's would
        futures = [pool.submit(contextvars.copy_context().run, read, *spec) for spec in specs]
        wait(futures, return_when=FIRST_EXCEPTION)
        failed = [f.exception() for f in futures if f.done() and f.exception() is not None]
        first = next((e for e in failed if not isinstance(e, _Stopped)), None)
        if first is not None:
            stop.set()
            raise first
        return [f.result() for f in futures]


def read_account(
    calls: StripeCalls,
    *,
    on_page: OnPage | None = None,
    only: Collection[str] | None = None,
    per_customer: bool = False,
    on_customer: OnCustomer | None = None,
) -> AccountLists:
    """Every list once, account-wide; ``only`` keeps these customers (a cohort), every
    page is still read. ``per_customer``: each customer's balance transactions too (one
    request per customer: a snapshot needs them, ``users sync`` does not). Each request
    is retried after a transient failure (``StripeCalls.retrying_reads``).
    ``on_customer`` is told each customer as soon as its objects are complete, before
    the next customer's own requests: a cohort's first members can be migrated while
    the read goes on."""
    calls = calls.retrying_reads()
    out = AccountLists()  # taken_at: now, before the first page
    expand = {"expand": [f"data.{snapshot.CUSTOMER_EXPAND}"]}

    def wanted(name: str, obj: dict[str, Any]) -> bool:
        return (
            only is None
            or (obj["id"] if name == "customers" else ref_id(obj.get("customer"))) in only
        )

    customers, *others = _read_lists(
        calls, [("customers", "/v1/customers", expand), *snapshot.lists(calls)], on_page, wanted
    )
    out.customers = customers
    known = {c["id"] for c in out.customers}
    grouped: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for (name, _fn, _params), objs in zip(snapshot.lists(calls), others, strict=True):
        for obj in objs:
            cid = ref_id(obj.get("customer"))
            if cid in known:  # else another customer's, or a deleted customer's leftovers
                grouped[cid][name].append(obj)
    # charges embed a page of 10 refunds; more are listed per charge, or once account-wide
    # when many charges have more
    longer = {
        ch["id"] for g in grouped.values() for ch in g["charges"] if snapshot.needs_refund_list(ch)
    }
    refunds: dict[str, list[dict[str, Any]]] | None = None
    if len(longer) > REFUND_LISTS_PER_CHARGE:
        refunds = defaultdict(list)
        for rf in _pages(calls, "refunds", "/v1/refunds", {}, on_page):
            if (charge := snapshot.charge_of(rf)) in longer:
                refunds[charge].append(rf)
    coupons: dict[str, dict[str, Any]] = {}
    for cus in out.customers:
        try:
            out.objects[cus["id"]] = snapshot.assemble(
                calls, cus, grouped.get(cus["id"], {}), refunds=refunds, coupons=coupons,
                per_customer=per_customer,
            )  # fmt: skip
        except NotFound as exc:  # deleted while the lists were read
            out.failed[cus["id"]] = str(exc)
            continue
        if on_customer is not None:
            on_customer(cus["id"], out.objects[cus["id"]])
    return out


def snapshots(
    calls: StripeCalls,
    refs: Collection[UserRef],
    on_snapshot: Callable[[RawSnapshot], None] | None = None,
    *,
    per_customer: bool = True,
) -> dict[str, RawSnapshot]:
    """A cohort's snapshots by user id, each complete as its per-user snapshot;
    ``on_snapshot`` gets each one as soon as it is complete. ``per_customer=False``
    leaves out the part read one request per customer (``snapshot.read_per_customer``), for
    each member's own preflight to add (``complete``)."""
    users = {r.legacy_customer_id: r.user_id for r in refs if r.legacy_customer_id}
    out: dict[str, RawSnapshot] = {}
    started = datetime.now(UTC)  # before the first page, as the read's own ``taken_at``

    def done(cid: str, objects: dict[str, Any]) -> None:
        snap = out[users[cid]] = RawSnapshot(users[cid], cid, objects, taken_at=started)
        if on_snapshot is not None:
            on_snapshot(snap)

    read_account(calls, only=set(users), per_customer=per_customer, on_customer=done)
    return out


def complete(calls: StripeCalls, snap: RawSnapshot) -> RawSnapshot:
    """A snapshot read with ``per_customer=False``, with that part read now (one
    request); it keeps the bulk read's ``taken_at``, the earlier of its two reads."""
    if snapshot.PER_CUSTOMER in snap.objects:
        return snap
    extra = snapshot.read_per_customer(calls, snap.customer_id)
    return replace(snap, objects={**snap.objects, **extra}) if extra else snap


def estimate(calls: StripeCalls, members: int, account: Mapping[str, int]) -> tuple[int, int]:
    """(bulk, per user): requests to snapshot ``members`` customers of an account of
    ``account`` objects per list (``"customers"``, ``"subscriptions"``, ``"invoices"``,
    ``"charges"``, ``"refunds"``, ``"invoice items"``, ``"credit notes"``)."""
    wire = calls.wire
    caps = dict(wire.page_caps)
    names = ["customers", *(name for name, _, _ in snapshot.lists(calls))]
    pages = sum(
        max(1, math.ceil(account.get(n, 0) / min(calls.page_size, caps.get(n, calls.page_size))))
        for n in names
    )
    per_customer = 1 if wire.list_expansions else 0  # balance transactions, in both reads
    per_user = len(names) + per_customer  # retrieve the customer, then each of its lists
    return pages + members * per_customer, members * per_user


def features(objects: Mapping[str, Any]) -> LegacyFeatures:
    """Raw-only features of one customer's objects (see ``LegacyFeatures``)."""
    cus = objects["customer"]
    pm = (cus.get("invoice_settings") or {}).get("default_payment_method")
    pm_type = pm.get("type") if isinstance(pm, Mapping) else None  # expanded by the list
    source = ref_id(cus.get("default_source"))
    if pm_type is None and source:
        pm_type = "card" if source.startswith("card_") else "source"
    if pm_type is None:
        charges = sorted(objects.get("charges") or [], key=lambda c: c.get("created") or 0)
        for ch in reversed(charges):
            details = ch.get("payment_method_details") or {}
            if details.get("type"):
                pm_type = str(details["type"])
                break
    if pm_type is None and pm is not None:
        pm_type = "unknown"  # an id the read did not expand
    subs = objects.get("subscriptions") or []
    automatic = any((s.get("automatic_tax") or {}).get("enabled") for s in subs)
    return LegacyFeatures(
        payment_method=pm_type,
        automatic_tax=automatic,
        pending_items=len(objects.get("pending_invoice_items") or []),
    )


def entries(
    lists: AccountLists,
    map_snapshot: Callable[[RawSnapshot], BillingHistory],
    *,
    dialect: DialectName = "current",
) -> Iterator[InventoryEntry]:
    """One entry per customer, mapped by the backend's own ``map_snapshot``; a customer
    the mapping cannot read is an entry with a ``problem``, never an aborted sync."""
    for cus in lists.customers:
        cid = cus["id"]
        user_id = metadata(cus).get(META_USER, "")
        objects = lists.objects.get(cid) or {"customer": cus}
        snap = RawSnapshot(user_id, cid, objects, taken_at=lists.taken_at)
        history: BillingHistory | None = None
        problem = lists.failed.get(cid)
        try:
            if problem is not None:
                raise TransformError(problem, record=cid)
            history = map_snapshot(snap)
            customer = history.customer
        except TransformError as exc:
            problem = problem or str(exc)
            try:
                customer = map_customer(
                    cus,
                    objects.get("subscriptions") or [],
                    objects.get("invoices") or [],
                    dialect=dialect,
                )
            except TransformError:
                customer = None
        yield InventoryEntry(
            customer_id=cid,
            user_id=user_id,
            customer=customer,
            history=history,
            features=features(objects),
            snapshot=snap,
            problem=problem,
        )
