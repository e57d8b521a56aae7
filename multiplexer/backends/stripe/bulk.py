"""The legacy account read in bulk: account-wide list endpoints, grouped per customer.

``twinbill users sync`` needs every customer's billing shape, and a cohort every
member's snapshot, not one set of lists per customer (5–7+ requests each). Stripe
lists customers, subscriptions (``status=all``), invoices, charges, invoice items and
credit notes account-wide, 100 per page, so the whole account costs about
(objects / 100) requests per list. The lists, their expansions and how a customer's
objects are completed and shaped are ``snapshot``'s, shared with the per-user read:
a customer's ``objects`` here equal its per-user snapshot's (same content hash), and
are mapped by the same ``map_snapshot``.

A read keeps the objects it wants in a ``Stage`` (``fill``): in memory for a small
read (``MemoryStage``), or in the database (``multiplexer.stage``) so that a cohort's
chunks share one read of the account and a big account's sync does not hold it in
memory; customers are then assembled from it a batch at a time (``snapshots``,
``entries``).

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
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from core.canonical import BillingHistory
from core.errors import NotFound, TransformError
from multiplexer.backends.base import InventoryEntry, RawSnapshot, Stage, StagedRow, UserRef
from multiplexer.backends.stripe import snapshot
from multiplexer.backends.stripe.dialect import DialectName
from multiplexer.backends.stripe.fields import META_USER, metadata, ref_id
from multiplexer.backends.stripe.mapping import map_customer
from multiplexer.backends.stripe.transport import StripeCalls
from multiplexer.facets import LegacyFeatures

#: ``(list name, objects read so far)`` after every page
OnPage = Callable[[str, int], None]
#: charges with more than a page of refunds listed one by one; beyond, one account-wide list
REFUND_LISTS_PER_CHARGE = 10


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
    sink: Callable[[str, list[dict[str, Any]]], None],
) -> None:
    """Every list of ``specs`` read to its end, the lists side by side (one thread each),
    each page's objects handed to ``sink(list name, objects)`` as it arrives; the sink keeps
    what the read wants (a cohort's objects, not the whole account's) where it keeps them.

    A list's pages follow each other (each cursor is the last page's last id), but the
    lists do not depend on one another: read one after another, the account's read took
    the sum of their round trips with one request in flight, so the first tenth of a
    500-user cohort used 0.72 of the budget (bench/migration_throughput.py --timeline).
    The rate limiter still paces every request. A list that fails stops the others at
    their next page, and its error is raised."""
    stop = threading.Event()

    def read(name: str, fn: Any, params: dict[str, Any]) -> None:
        page: list[dict[str, Any]] = []
        size = calls.page_size
        try:
            for obj in _pages(calls, name, fn, params, on_page):
                if stop.is_set():
                    raise _Stopped
                page.append(obj)
                if len(page) >= size:
                    sink(name, page)
                    page = []
            sink(name, page)
        except _Stopped:
            raise
        except BaseException:
            stop.set()
            raise

    with ThreadPoolExecutor(len(specs), thread_name_prefix="bulk-list") as pool:
        # each thread logs with the task's context (its task id), as the caller's would
        futures = [pool.submit(contextvars.copy_context().run, read, *spec) for spec in specs]
        wait(futures, return_when=FIRST_EXCEPTION)
        failed = [f.exception() for f in futures if f.done() and f.exception() is not None]
        first = next((e for e in failed if not isinstance(e, _Stopped)), None)
        if first is not None:
            stop.set()
            raise first


class MemoryStage:
    """A ``Stage`` in memory, for one read (``users sync``, a read with no stage given)."""

    def __init__(self, wanted: Collection[str] | None = None) -> None:
        self.taken_at: datetime | None = None
        self.extra: dict[str, Any] = {}
        self._wanted = None if wanted is None else set(wanted)
        self._rows: dict[str, dict[str, list[dict[str, Any]]]] = {}
        self.order: list[str] = []  # customers in the order the customer list gave them
        self._lock = threading.Lock()

    def wanted(self) -> set[str] | None:
        return self._wanted

    def begin(self) -> None:
        self.taken_at, self.extra, self._rows, self.order = None, {}, {}, []

    def add(self, rows: Sequence[StagedRow]) -> None:
        with self._lock:
            for cid, name, obj in rows:
                if name == "customers":
                    self.order.append(cid)
                self._rows.setdefault(cid, {}).setdefault(name, []).append(obj)

    def finish(self, taken_at: datetime, extra: dict[str, Any]) -> None:
        self.taken_at, self.extra = taken_at, dict(extra)

    def load(self, customer_ids: Sequence[str]) -> dict[str, dict[str, list[dict[str, Any]]]]:
        return {cid: self._rows[cid] for cid in customer_ids if cid in self._rows}

    def customer_ids(self) -> list[str]:
        return list(self.order)


#: the stage's list of the refunds read account-wide (for charges with many refunds)
STAGED_REFUNDS = "refunds of long charges"
#: customers assembled per ``Stage.load``
LOAD_BATCH = 100


def fill(calls: StripeCalls, stage: Stage, *, on_page: OnPage | None = None) -> None:
    """Read every account-wide list once into ``stage``, keeping its ``wanted`` customers'
    objects (every page is still read). Charges embed a page of 10 refunds; when more than
    ``REFUND_LISTS_PER_CHARGE`` of the kept charges have more, the refunds are one more
    account-wide list, kept too; else each such charge's are listed when it is assembled.
    The stage's ``taken_at`` is set last, to the read's start: a read that dies midway
    leaves a stage that the next read ``begin``s again."""
    calls = calls.retrying_reads()
    started = datetime.now(UTC)  # before the first page: any change after it may be missing
    only = stage.wanted()
    stage.begin()
    longer: dict[str, str] = {}  # charge id -> customer, for charges with more refunds
    lock = threading.Lock()

    def sink(name: str, objs: list[dict[str, Any]]) -> None:
        rows: list[StagedRow] = []
        for obj in objs:
            cid = obj["id"] if name == "customers" else ref_id(obj.get("customer"))
            if not cid or (only is not None and cid not in only):
                continue  # another customer's (or a deleted customer's leftovers)
            rows.append((cid, name, obj))
            if name == "charges" and snapshot.needs_refund_list(obj):
                with lock:
                    longer[obj["id"]] = cid
        if rows:
            stage.add(rows)

    expand = {"expand": [f"data.{snapshot.CUSTOMER_EXPAND}"]}
    _read_lists(
        calls, [("customers", "/v1/customers", expand), *snapshot.lists(calls)], on_page, sink
    )
    listed = len(longer) > REFUND_LISTS_PER_CHARGE
    if listed:
        rows: list[StagedRow] = []
        for rf in _pages(calls, "refunds", "/v1/refunds", {}, on_page):
            if (charge := snapshot.charge_of(rf)) in longer:
                rows.append((longer[charge], STAGED_REFUNDS, rf))
        stage.add(rows)
    stage.finish(started, {"refunds_listed": listed})


def _batches(stage: Stage, customer_ids: Sequence[str]) -> Iterator[tuple[str, snapshot.Lists]]:
    """(customer id, its lists) of those the stage holds, ``LOAD_BATCH`` per ``load``."""
    for at in range(0, len(customer_ids), LOAD_BATCH):
        got = stage.load(customer_ids[at : at + LOAD_BATCH])
        for cid in customer_ids[at : at + LOAD_BATCH]:
            if (got.get(cid) or {}).get("customers"):
                yield cid, got[cid]


class _Assembler:
    """One customer's ``objects`` from its staged lists (``snapshot.assemble``), what no
    account-wide list holds read now per object; the coupons cache is the read's."""

    def __init__(self, calls: StripeCalls, stage: Stage, *, per_customer: bool) -> None:
        self.calls = calls.retrying_reads()
        self.listed = bool(stage.extra.get("refunds_listed"))
        self.per_customer = per_customer
        self.coupons: dict[str, dict[str, Any]] = {}

    def __call__(self, lists: snapshot.Lists) -> dict[str, Any]:
        refunds: dict[str, list[dict[str, Any]]] | None = None
        if self.listed:
            refunds = defaultdict(list)
            for rf in lists.get(STAGED_REFUNDS) or []:
                refunds[snapshot.charge_of(rf) or ""].append(rf)
        return snapshot.assemble(
            self.calls, lists["customers"][0], lists, refunds=refunds, coupons=self.coupons,
            per_customer=self.per_customer,
        )  # fmt: skip


def snapshots(
    calls: StripeCalls,
    refs: Collection[UserRef],
    on_snapshot: Callable[[RawSnapshot], None] | None = None,
    *,
    per_customer: bool = True,
    stage: Stage | None = None,
) -> dict[str, RawSnapshot]:
    """A cohort's snapshots by user id, each complete as its per-user snapshot;
    ``on_snapshot`` gets each one as soon as it is complete. ``per_customer=False``
    leaves out the part read one request per customer (``snapshot.read_per_customer``), for
    each member's own preflight to add (``complete``). ``stage``: the account read a
    cohort's chunks share, read into it now unless it is filled already (``Stage``)."""
    users = {r.legacy_customer_id: r.user_id for r in refs if r.legacy_customer_id}
    if stage is None:
        stage = MemoryStage(users)
    if stage.taken_at is None:
        fill(calls, stage)
    assemble = _Assembler(calls, stage, per_customer=per_customer)
    out: dict[str, RawSnapshot] = {}
    for cid, lists in _batches(stage, list(users)):
        try:
            objects = assemble(lists)
        except NotFound:  # deleted while the lists were read: read per user
            continue
        snap = out[users[cid]] = RawSnapshot(users[cid], cid, objects, taken_at=stage.taken_at)
        if on_snapshot is not None:
            on_snapshot(snap)
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
    calls: StripeCalls,
    stage: Stage,
    map_snapshot: Callable[[RawSnapshot], BillingHistory],
    *,
    dialect: DialectName = "current",
) -> Iterator[InventoryEntry]:
    """One entry per customer of a filled ``stage``, in the customer list's order, a
    batch of customers in memory at a time; mapped by the backend's own
    ``map_snapshot``. A customer the mapping cannot read is an entry with a ``problem``,
    never an aborted sync. Each entry's snapshot leaves out the per-customer part
    (``users sync`` does not need its balance transactions)."""
    assemble = _Assembler(calls, stage, per_customer=False)
    for cid, lists in _batches(stage, stage.customer_ids()):
        cus = lists["customers"][0]
        user_id = metadata(cus).get(META_USER, "")
        history: BillingHistory | None = None
        problem: str | None = None
        try:
            objects = assemble(lists)
        except NotFound as exc:  # deleted while the lists were read
            objects, problem = {"customer": cus}, str(exc)
        snap = RawSnapshot(user_id, cid, objects, taken_at=stage.taken_at)
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
