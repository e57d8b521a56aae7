"""The shared legacy change feed: proofs from events, changes, gaps, one read for many."""

from __future__ import annotations

import dataclasses
import shutil
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from core import dbschema
from core.canonical import System
from core.db import make_engine, make_sessionmaker, transaction
from multiplexer.backends.stripe.shapes import event_keys, migration_comment
from multiplexer.change_feed import ChangeFeed, mark_event
from multiplexer.models import LegacyChangeFeed, LegacyChangeMark
from tests.fakes.billing import FakeBillingBackend


def _sessions(url: str):  # type: ignore[no-untyped-def]
    dbschema.upgrade(url)
    engine = make_engine(url)
    return engine, make_sessionmaker(engine)


@pytest.fixture(scope="module")
def schema(tmp_path_factory):  # type: ignore[no-untyped-def]
    path = tmp_path_factory.mktemp("feed") / "empty.db"
    dbschema.upgrade(f"sqlite:///{path}")  # once: each test gets a copy
    return path


@pytest.fixture
def sessions(schema, tmp_path):  # type: ignore[no-untyped-def]
    shutil.copy(schema, tmp_path / "feed.db")
    engine = make_engine(f"sqlite:///{tmp_path / 'feed.db'}")
    yield make_sessionmaker(engine)
    engine.dispose()


def _legacy(events: bool = True) -> FakeBillingBackend:
    fake = FakeBillingBackend("legacy", System.LEGACY, clock=lambda: datetime.now(UTC))
    fake.events = [] if events else None
    return fake


def _feed(sessions, legacy, **kw):  # type: ignore[no-untyped-def]
    return ChangeFeed(sessions, legacy, **{"refresh_every": 0, "settle": 0, "margin": 0, **kw})


def _reads(legacy: FakeBillingBackend) -> int:
    return legacy.calls.count("list_changes")


def test_no_event_proves_unchanged_and_a_second_user_reuses_the_read(sessions):
    legacy = _legacy()
    feed = _feed(sessions, legacy, refresh_every=60)
    since = datetime.now(UTC) - timedelta(seconds=2)
    first = feed.check({"cus_a"}, since, datetime.now(UTC))
    assert first.unchanged and first.read
    # a second user whose import finished before that read: no second read
    second = feed.check({"cus_b"}, since, since + timedelta(seconds=1))
    assert second.unchanged and not second.read
    assert _reads(legacy) == 1


def test_an_event_after_the_snapshot_names_the_user(sessions):
    legacy = _legacy()
    feed = _feed(sessions, legacy)
    since = datetime.now(UTC) - timedelta(seconds=3)
    legacy.touch("cus_a", event_type="customer.subscription.updated")
    verdict = feed.check({"cus_a", "sub_1"}, since, datetime.now(UTC))
    assert not verdict.unchanged and verdict.changed
    assert "customer.subscription.updated" in verdict.reason
    assert feed.check({"cus_other"}, since, datetime.now(UTC)).unchanged  # only the named one


def test_an_object_the_snapshot_holds_counts_as_the_user(sessions):
    """A plan update names no customer, only the plan: every snapshot holding it changed."""
    legacy = _legacy()
    feed = _feed(sessions, legacy)
    since = datetime.now(UTC) - timedelta(seconds=3)
    legacy.touch("plan_basic", event_type="plan.updated")
    assert feed.check({"cus_a", "plan_basic"}, since, datetime.now(UTC)).changed
    assert feed.check({"cus_b", "plan_pro"}, since, datetime.now(UTC)).unchanged


def test_a_change_before_the_snapshot_minus_the_margin_is_not_after_it(sessions):
    legacy = _legacy()
    legacy.touch("cus_a")
    legacy.events[0] = type(legacy.events[0])(
        ("cus_a",), datetime.now(UTC) - timedelta(seconds=30), "customer.updated", "evt_old"
    )
    feed = ChangeFeed(sessions, legacy, refresh_every=0, settle=0, margin=5)
    since = datetime.now(UTC) - timedelta(seconds=10)
    assert feed.check({"cus_a"}, since, datetime.now(UTC)).unchanged
    # within the margin (our clock may be ahead of legacy's): counted as after
    assert (
        not ChangeFeed(sessions, legacy, refresh_every=0, settle=0, margin=25)
        .check({"cus_a"}, since, datetime.now(UTC))
        .unchanged
    )


def test_an_event_that_names_no_owner_is_a_gap_for_everyone(sessions):
    legacy = _legacy()
    feed = _feed(sessions, legacy)
    since = datetime.now(UTC) - timedelta(seconds=3)
    legacy.touch("*", event_type="invoice.updated")
    verdict = feed.check({"cus_a"}, since, datetime.now(UTC))
    assert not verdict.unchanged and not verdict.changed and verdict.reason.startswith("gap:")


def test_a_stream_that_cannot_tell_is_a_gap_without_waiting_or_reading(sessions):
    legacy = _legacy(events=False)
    feed = ChangeFeed(sessions, legacy, settle=30)
    verdict = feed.check({"cus_a"}, datetime.now(UTC), datetime.now(UTC))
    assert not verdict.unchanged and "the fake keeps no events" in verdict.reason
    assert verdict.wait is None and _reads(legacy) == 0


def test_events_not_yet_listable_say_when_to_ask_again_and_then_prove_it(sessions):
    """Events of the import's moment are listable only ``settle`` later: the check reads
    nothing and names the wait (the saga frees its thread); asked again then, it reads."""
    now = datetime.now(UTC)
    clock = [now]
    legacy = _legacy()
    read = legacy.list_changes  # the read starts on the feed's (test) clock
    legacy.list_changes = lambda since: dataclasses.replace(read(since), read_at=clock[0])  # type: ignore[method-assign]
    feed = _feed(sessions, legacy, settle=2, clock=lambda: clock[0])
    early = feed.check({"cus_a"}, now - timedelta(seconds=5), now)
    assert (early.unchanged, early.wait, _reads(legacy)) == (False, 1.0, 0)  # 1 s per ask at most
    clock[0] = now + timedelta(seconds=1)
    assert feed.check({"cus_a"}, now - timedelta(seconds=5), now).wait == 1.0
    clock[0] = now + timedelta(seconds=2)
    later = feed.check({"cus_a"}, now - timedelta(seconds=5), now)
    assert later.unchanged and later.read and later.wait is None and _reads(legacy) == 1


def test_a_recheck_asked_long_after_its_import_needs_a_horizon_of_just_before_now(sessions):
    """A queue in front of it, or a worker that died: the window that proved the user
    at its import no longer proves the minutes since, so the check reads again."""
    now = datetime.now(UTC)
    clock = [now]
    legacy = _legacy()
    read = legacy.list_changes  # the read starts on the feed's (test) clock
    legacy.list_changes = lambda since: dataclasses.replace(read(since), read_at=clock[0])  # type: ignore[method-assign]
    feed = _feed(sessions, legacy, refresh_every=1, settle=1, clock=lambda: clock[0])
    since, imported = now - timedelta(seconds=5), now - timedelta(seconds=2)
    assert feed.check({"cus_a"}, since, imported).unchanged and _reads(legacy) == 1
    clock[0] = now + timedelta(seconds=120)
    late = feed.check({"cus_a"}, since, imported)
    assert late.unchanged and late.read and _reads(legacy) == 2
    assert late.horizon is not None and late.horizon >= clock[0] - feed.lag


def test_a_snapshot_older_than_the_window_extends_it_backwards(sessions):
    legacy = _legacy()
    feed = _feed(sessions, legacy)
    now = datetime.now(UTC)
    assert feed.check({"cus_a"}, now - timedelta(seconds=2), now).unchanged
    legacy.touch("cus_b")
    assert feed.check({"cus_b"}, now - timedelta(seconds=60), datetime.now(UTC)).changed
    with sessions() as s:
        row = s.get(LegacyChangeFeed, 1)
        assert row.complete_from <= now - timedelta(seconds=60) and row.reads == 2


def test_a_webhook_marks_its_customer_and_never_moves_a_mark_back(sessions):
    at = int(datetime.now(UTC).timestamp())
    event = {
        "id": "evt_1",
        "type": "customer.subscription.updated",
        "created": at,
        "data": {"object": {"id": "sub_1", "object": "subscription", "customer": "cus_a"}},
    }
    with transaction(sessions) as s:
        assert mark_event(s, event) == 2  # the customer and the subscription
    with transaction(sessions) as s:
        mark_event(s, {**event, "id": "evt_0", "created": at - 100})  # late, older
    with sessions() as s:
        row = s.get(LegacyChangeMark, "cus_a")
        assert (row.event_id, int(row.changed_at.timestamp())) == ("evt_1", at)


def _own_cancel() -> dict:
    return {
        "id": "sub_1",
        "object": "subscription",
        "customer": "cus_a",
        "status": "canceled",
        "cancellation_details": {"comment": migration_comment("mig_1")},
    }


@pytest.mark.parametrize(
    ("event", "keys"),
    [
        (
            {"type": "customer.updated", "data": {"object": {"object": "customer", "id": "cus_a"}}},
            ("cus_a",),
        ),
        (
            {
                "type": "charge.refunded",
                "data": {"object": {"id": "re_1", "object": "refund", "charge": "ch_1"}},
            },
            ("ch_1", "re_1"),
        ),
        (
            {
                "type": "payment_method.detached",
                "data": {
                    "object": {"id": "pm_1", "customer": None},
                    "previous_attributes": {"customer": "cus_a"},
                },
            },
            ("cus_a", "pm_1"),
        ),
        (
            {"type": "invoice.updated", "data": {"object": {"id": "in_1", "object": "invoice"}}},
            ("*",),
        ),
        (
            {"type": "payout.paid", "data": {"object": {"id": "po_1", "object": "payout"}}},
            ("po_1",),
        ),
        (  # twinbill's own migration cancel: names nothing (verify knows it from the answer)
            {"type": "customer.subscription.deleted", "data": {"object": _own_cancel()}},
            (),
        ),
        (  # someone else's cancel of a subscription
            {
                "type": "customer.subscription.deleted",
                "data": {"object": {**_own_cancel(), "cancellation_details": {"comment": None}}},
            },
            ("cus_a", "sub_1"),
        ),
        (  # a later change to the subscription twinbill canceled is someone else's
            {"type": "customer.subscription.updated", "data": {"object": _own_cancel()}},
            ("cus_a", "sub_1"),
        ),
    ],
)
def test_event_keys(event, keys):
    assert event_keys(event) == keys


def _two_workers_share_one_read(factory) -> None:  # type: ignore[no-untyped-def]
    legacy = _legacy()
    since = datetime.now(UTC) - timedelta(seconds=2)
    until = datetime.now(UTC)
    gate = threading.Barrier(2)
    verdicts = []

    def worker(cid: str) -> None:
        feed = _feed(factory, legacy, refresh_every=60)  # each worker builds its own
        gate.wait()
        verdict = feed.check({cid}, since, until)
        while verdict.wait is not None:  # the other one is reading: ask again, as the saga
            time.sleep(verdict.wait)
            verdict = feed.check({cid}, since, until)
        verdicts.append(verdict)

    threads = [threading.Thread(target=worker, args=(c,)) for c in ("cus_a", "cus_b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert [v.unchanged for v in verdicts] == [True, True]
    assert sorted(v.read for v in verdicts) == [False, True]
    assert _reads(legacy) == 1
    with factory() as s:
        assert s.scalar(sa.select(LegacyChangeFeed.reads)) == 1


def test_two_threads_share_one_read_on_sqlite(sessions):
    _two_workers_share_one_read(sessions)


@pytest.mark.postgres
def test_two_threads_share_one_read_on_postgres(postgres_url):
    engine, factory = _sessions(postgres_url)
    try:
        _two_workers_share_one_read(factory)
    finally:
        engine.dispose()
