"""Current dialect: a customer's snapshot from the account-wide lists equals its per-user
snapshot (same objects, same content hash), for every current-shape configuration.

One Stripe double holds every configuration (tests/stripe_current/configurations.py);
the bulk read runs once, inside the first test (so the SDK-params conformance fixture
checks its requests), and each configuration compares against its own per-user read.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

import pytest

from migration.records import content_hash
from multiplexer.backends.base import UserRef
from multiplexer.backends.stripe import bulk
from multiplexer.backends.stripe.backend import StripeLegacyBackend
from tests.stripe_current import configurations, shapes
from tests.stripe_current.double import StripeDouble, client_for

pytestmark = pytest.mark.skipif(not shapes.available(), reason="Stripe's fixtures are missing")

NAMES = sorted(configurations.CONFIGURATIONS)


@pytest.fixture(scope="module")
def account() -> dict[str, Any]:
    double = StripeDouble()
    customers = {name: configurations.CONFIGURATIONS[name](double) for name in NAMES}
    return {"double": double, "customers": customers}


def _bulk(account: dict[str, Any]) -> dict[str, Any]:
    if "bulk" not in account:
        double = account["double"]
        backend = StripeLegacyBackend(client_for(double), dialect="current")
        refs = [UserRef(f"u-{n}", cid) for n, cid in account["customers"].items()]
        before = len(double.reads)
        account["bulk"] = backend.snapshots([*refs, UserRef("u-gone", "cus_gone")])
        account["bulk_reads"] = double.reads[before:]
    return account["bulk"]


@pytest.mark.parametrize("name", NAMES)
def test_the_bulk_snapshot_is_the_per_user_snapshot(account: dict[str, Any], name: str) -> None:
    bulk = _bulk(account)[f"u-{name}"]
    backend = StripeLegacyBackend(client_for(account["double"]), dialect="current")
    single = backend.snapshot(UserRef(f"u-{name}", account["customers"][name]))
    assert bulk.customer_id == single.customer_id
    assert bulk.objects == single.objects
    assert content_hash(bulk.objects) == content_hash(single.objects)
    if name not in configurations.UNMAPPABLE:
        assert backend.map_snapshot(bulk) == backend.map_snapshot(single)


def test_one_bulk_read_costs_a_page_per_list_plus_one_call_per_customer(
    account: dict[str, Any],
) -> None:
    _bulk(account)
    reads = Counter(account["bulk_reads"])
    # customers, subscriptions, invoices, charges, invoice items, credit notes: one page
    # each (fewer than 100 objects); the rest is what no list carries and costs the same
    # per user: balance transactions, payment records, coupons, products
    for path in ("customers", "subscriptions", "invoices", "charges", "invoiceitems",
                 "credit_notes"):  # fmt: skip
        assert reads[f"GET /v1/{path}"] == 1, path
    balance = [r for r in reads if r.endswith("/balance_transactions")]
    assert len(balance) == len(NAMES) and all(reads[r] == 1 for r in balance)
    per_user = 0
    backend = StripeLegacyBackend(client_for(account["double"]), dialect="current")
    for name, cid in account["customers"].items():
        before = len(account["double"].reads)
        backend.snapshot(UserRef(f"u-{name}", cid))
        per_user += len(account["double"].reads) - before
    assert sum(reads.values()) < per_user / 2, (sum(reads.values()), per_user)


def test_a_customer_the_bulk_read_did_not_see_is_left_to_the_per_user_read(
    account: dict[str, Any],
) -> None:
    bulk = _bulk(account)
    assert "u-gone" not in bulk
    assert set(bulk) == {f"u-{n}" for n in NAMES}
    assert len({s.taken_at for s in bulk.values()}) == 1  # the read's start, for all


def test_a_transient_failure_mid_read_is_retried_not_the_whole_read_lost() -> None:
    """One 500 among a bulk read's hundreds of GETs: that request is tried again, and the
    snapshots are those of a clean read (a per-user read is retried whole by the saga)."""
    double = StripeDouble()
    cid = configurations.seed_plain(double)
    backend = StripeLegacyBackend(client_for(double), dialect="current")
    clean = backend.snapshots([UserRef("u-plain", cid)])
    double.fail_next["GET /v1/invoices"] = 500
    double.fail_next["GET /v1/customers/([^/]+)/balance_transactions"] = 503
    again = backend.snapshots([UserRef("u-plain", cid)])
    assert double.fail_next == {}  # both failures were met
    assert again["u-plain"].objects == clean["u-plain"].objects


def test_a_per_user_read_is_not_retried_by_the_transport() -> None:
    from core.errors import BackendUnavailable

    double = StripeDouble()
    cid = configurations.seed_plain(double)
    backend = StripeLegacyBackend(client_for(double), dialect="current")
    double.fail_next["GET /v1/invoices"] = 500
    with pytest.raises(BackendUnavailable):
        backend.snapshot(UserRef("u-plain", cid))


def test_a_cohort_read_without_per_customer_requests_is_completed_by_one_request_each(
    account: dict[str, Any],
) -> None:
    """The cohort prefetch reads the account-wide lists only; each member's preflight then
    reads its balance transactions (one request) and has the per-user snapshot."""
    double = account["double"]
    backend = StripeLegacyBackend(client_for(double), dialect="current")
    refs = [UserRef(f"u-{n}", cid) for n, cid in account["customers"].items()]
    before = len(double.reads)
    partial = backend.snapshots(refs, per_customer=False)
    lists = double.reads[before:]
    assert not [r for r in lists if r.endswith("/balance_transactions")], lists
    for name, cid in account["customers"].items():
        snap = partial[f"u-{name}"]
        assert "balance_transactions" not in snap.objects
        before = len(double.reads)
        whole = backend.complete_snapshot(snap)
        assert double.reads[before:] == [f"GET /v1/customers/{cid}/balance_transactions"]
        single = backend.snapshot(UserRef(f"u-{name}", cid))
        assert content_hash(whole.objects) == content_hash(single.objects), name
        assert whole.taken_at == snap.taken_at  # the earlier read's start: changes after it count
        before = len(double.reads)
        assert backend.complete_snapshot(whole) is whole and double.reads[before:] == []
    # the credit-note configuration holds one: completing is not only adding an empty list
    assert backend.complete_snapshot(partial["u-credit_notes"]).objects["balance_transactions"]


def test_a_cohorts_chunks_are_assembled_from_one_staged_read_of_the_account(
    account: dict[str, Any],
) -> None:
    """A cohort read in chunks reads the account-wide lists once, into a stage; each
    later chunk is assembled from it without a list request, every snapshot still equal to
    the per-user one and dated at the stage's read. A stage keeps only its cohort's
    customers (``wanted``)."""
    double = account["double"]
    backend = StripeLegacyBackend(client_for(double), dialect="current")
    refs = [UserRef(f"u-{n}", cid) for n, cid in account["customers"].items()]
    stage = bulk.MemoryStage({r.legacy_customer_id for r in refs[1:]})  # the first: not ours
    chunks = [refs[1:4], refs[4:]]
    before = len(double.reads)
    first = backend.snapshots(chunks[0], per_customer=False, stage=stage)
    account_wide = {f"GET /v1/{p}" for p in ACCOUNT_LISTS}
    lists = [r for r in double.reads[before:] if r in account_wide]
    assert sorted(lists) == sorted(account_wide), lists
    before = len(double.reads)
    second = backend.snapshots(chunks[1], per_customer=False, stage=stage)
    again = [r for r in double.reads[before:] if r in account_wide]
    assert again == [], again  # no account-wide list for the second chunk
    assert backend.snapshots(refs[:1], stage=stage) == {}  # not kept: read per user
    for ref in refs[1:]:
        snap = {**first, **second}[ref.user_id]
        assert snap.taken_at == stage.taken_at
        single = backend.snapshot(ref)
        whole = backend.complete_snapshot(snap)
        assert content_hash(whole.objects) == content_hash(single.objects), ref.user_id


#: the account-wide lists of the current dialect's read, by request path
ACCOUNT_LISTS = (
    "customers", "subscriptions", "invoices", "charges", "invoiceitems", "credit_notes"
)  # fmt: skip


def test_the_account_wide_lists_are_read_side_by_side(monkeypatch) -> None:
    """Each list's first request waits until every list has sent one: read one after
    another (as they were: the first tenth of a cohort at 0.72 of the budget), the first
    would wait for the others forever and the read would fail. The snapshots are those of
    a read with one request at a time."""
    double = StripeDouble()
    cids = [configurations.seed_varied(double, f"v{i}", i) for i in range(12)]
    refs = [UserRef(f"u-{i}", cid) for i, cid in enumerate(cids)]
    backend = StripeLegacyBackend(client_for(double), dialect="current")
    alone = {u: s.objects for u, s in backend.snapshots(refs).items()}
    together = threading.Barrier(len(ACCOUNT_LISTS), timeout=10)
    answer = double.request

    def wait_for_the_others(method, url, headers, post_data=None):
        path = urlsplit(url).path.removeprefix("/v1/")
        if method == "get" and path in ACCOUNT_LISTS:
            together.wait()
        return answer(method, url, headers, post_data)

    monkeypatch.setattr(double, "request", wait_for_the_others)
    side_by_side = backend.snapshots(refs)
    assert {u: s.objects for u, s in side_by_side.items()} == alone


def test_a_list_that_fails_fails_the_whole_read() -> None:
    from core.errors import BackendError

    double = StripeDouble()
    for i in range(3):
        configurations.seed_varied(double, f"v{i}", i)
    backend = StripeLegacyBackend(client_for(double), dialect="current")
    double.fail_next["GET /v1/invoices"] = 400  # not transient: not retried
    with pytest.raises(BackendError):
        backend.snapshots([UserRef("u-0", "cus_v0")])
    assert double.fail_next == {}
