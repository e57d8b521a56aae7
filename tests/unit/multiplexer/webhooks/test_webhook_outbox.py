"""Delivery to the application: signed, in order per user, retried, dead-lettered."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker
from webhook_helpers import APP_SECRET, APP_URL

from core.db import transaction
from core.errors import IllegalTransition
from multiplexer.models import OutboxMessage
from multiplexer.webhooks import outbox
from multiplexer.webhooks.outbox import DeliveryPolicy, deliver_user

T0 = datetime(2024, 6, 11, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Receiver:
    """The application's endpoint: records what it got; fails while ``failing``."""

    def __init__(self) -> None:
        self.got: list[tuple[str, dict]] = []
        self.failing = False

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = request.content
        ts, mac = (p.split("=", 1)[1] for p in request.headers["Twinbill-Signature"].split(","))
        expected = hmac.new(APP_SECRET.encode(), f"{ts}.".encode() + body, hashlib.sha256)
        assert hmac.compare_digest(expected.hexdigest(), mac), "bad signature"
        assert str(request.url) == APP_URL
        event = json.loads(body)
        assert request.headers["Twinbill-Event-Id"] == event["id"]
        self.got.append((event["id"], event))
        return httpx.Response(503 if self.failing else 204)

    def ids(self) -> list[str]:
        return [i for i, _ in self.got]


@pytest.fixture
def receiver() -> Receiver:
    return Receiver()


@pytest.fixture
def http(receiver: Receiver) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(receiver))


@pytest.fixture
def clock() -> Clock:
    return Clock()


def put(sessions: sessionmaker[Session], user_id: str, n: int, at: datetime = T0) -> str:
    event_id = f"evt_tb_{user_id}_{n}"
    with transaction(sessions) as session:
        session.add(
            OutboxMessage(
                event_id=event_id,
                user_id=user_id,
                type="invoice.paid",
                body={"id": event_id, "type": "invoice.paid", "n": n},
                status="pending",
                attempts=0,
                next_attempt_at=at,
                created_at=at,
            )
        )
    return event_id


def status_of(sessions: sessionmaker[Session], event_id: str) -> OutboxMessage:
    with sessions() as session:
        return session.scalars(
            sa.select(OutboxMessage).where(OutboxMessage.event_id == event_id)
        ).one()


def run(ctx, http, clock, user_id="u1", policy=None, enqueue=None):
    calls: list[tuple[str, float]] = []
    report = deliver_user(
        ctx.sessions,
        ctx.settings,
        user_id,
        client=http,
        enqueue=enqueue or (lambda u, c: calls.append((u, c))),
        policy=policy or DeliveryPolicy(),
        now=clock,
    )
    return report, calls


def test_delivers_signed_events_in_order(ctx, http, receiver, clock):
    first, second = put(ctx.sessions, "u1", 1), put(ctx.sessions, "u1", 2)
    report, calls = run(ctx, http, clock)
    assert receiver.ids() == [first, second]
    assert report.delivered == 2 and calls == []
    assert status_of(ctx.sessions, first).status == "delivered"


def test_failing_receiver_holds_later_messages_of_that_user(ctx, http, receiver, clock):
    first, second = put(ctx.sessions, "u1", 1), put(ctx.sessions, "u1", 2)
    receiver.failing = True
    report, calls = run(ctx, http, clock)
    assert receiver.ids() == [first]  # the second was not sent before the first got through
    assert report.failed == 1
    row = status_of(ctx.sessions, first)
    assert row.attempts == 1 and row.status == "pending" and row.last_error == "HTTP 503"
    assert row.next_attempt_at > T0
    [(user, countdown)] = calls
    assert user == "u1" and 0 < countdown <= outbox.MAX_COUNTDOWN

    run(ctx, http, clock)  # a retry that comes too early does nothing
    assert receiver.ids() == [first]

    receiver.failing = False
    clock.advance(countdown + 1)
    run(ctx, http, clock)
    assert receiver.ids() == [first, first, second]
    assert status_of(ctx.sessions, second).status == "delivered"


def test_one_users_failure_does_not_hold_other_users(ctx, http, receiver, clock):
    put(ctx.sessions, "u1", 1)
    other = put(ctx.sessions, "u2", 1)
    receiver.failing = True
    run(ctx, http, clock, "u1")
    receiver.failing = False
    run(ctx, http, clock, "u2")
    assert receiver.ids()[-1] == other


def test_dead_letter_after_max_attempts_blocks_the_stream(ctx, http, receiver, clock):
    first, second = put(ctx.sessions, "u1", 1), put(ctx.sessions, "u1", 2)
    receiver.failing = True
    policy = DeliveryPolicy(max_attempts=3)
    for _ in range(5):
        run(ctx, http, clock, policy=policy)
        clock.advance(3600)
    assert receiver.ids() == [first] * 3
    assert status_of(ctx.sessions, first).status == "dead"
    assert status_of(ctx.sessions, second).status == "pending"
    with ctx.sessions() as session:
        dead = outbox.dead_letters(session)
        assert [m.event_id for m in dead] == [first]
        assert outbox.blocked_behind(session, dead[0]) == 1
        assert outbox.due_users(session, clock.now) == []  # the sweep leaves it alone

    receiver.failing = False
    run(ctx, http, clock, policy=policy)
    assert receiver.ids() == [first] * 3  # still blocked: the dead head is not skipped

    with transaction(ctx.sessions) as session:
        outbox.retry_dead(session, dead[0].id, actor="user:ops", now=clock())
    run(ctx, http, clock, policy=policy)
    assert receiver.ids() == [first] * 4 + [second]


def test_retry_dead_refuses_a_live_message(ctx):
    put(ctx.sessions, "u1", 1)
    with transaction(ctx.sessions) as session:
        msg = session.scalars(sa.select(OutboxMessage)).one()
        with pytest.raises(IllegalTransition):
            outbox.retry_dead(session, msg.id)


def test_backoff_grows_with_jitter_and_caps_at_an_hour():
    policy = DeliveryPolicy()
    assert policy.backoff(1, lambda: 0.0) == 1.0
    assert policy.backoff(2, lambda: 1.0) == 4.0
    assert policy.backoff(50, lambda: 1.0) == 3600.0
    assert 1800.0 <= policy.backoff(50) <= 3600.0


def test_long_backoff_is_left_to_the_sweep(ctx, http, receiver, clock):
    put(ctx.sessions, "u1", 1)
    receiver.failing = True
    policy = DeliveryPolicy(base_delay=2000.0)
    _, calls = run(ctx, http, clock, policy=policy)
    assert calls == []  # > 10 minutes: no countdown task; the sweep will find it due


def test_sweep_enqueues_due_heads_only(ctx, clock):
    put(ctx.sessions, "due", 1)
    put(ctx.sessions, "later", 1, at=T0 + timedelta(hours=1))
    dead = put(ctx.sessions, "blocked", 1)
    put(ctx.sessions, "blocked", 2)
    with transaction(ctx.sessions) as session:
        session.execute(
            sa.update(OutboxMessage).where(OutboxMessage.event_id == dead).values(status="dead")
        )
    calls: list[tuple[str, float]] = []
    assert outbox.sweep(ctx.sessions, lambda u, c: calls.append((u, c)), T0) == 1
    assert calls == [("due", 0.0)]


def test_a_claimed_head_is_not_sent_twice(ctx, http, receiver, clock):
    put(ctx.sessions, "u1", 1)
    msg, _ = outbox._claim(ctx.sessions, "u1", clock(), DeliveryPolicy())
    assert msg is not None
    report, _ = run(ctx, http, clock)  # a second worker arrives while the first is sending
    assert receiver.ids() == [] and report.delivered == 0


def test_a_crashed_claim_is_retried_after_the_lease(ctx, http, receiver, clock):
    first = put(ctx.sessions, "u1", 1)
    outbox._claim(ctx.sessions, "u1", clock(), DeliveryPolicy(lease=60))  # worker died here
    clock.advance(61)
    with ctx.sessions() as session:
        assert outbox.due_users(session, clock()) == ["u1"]
    run(ctx, http, clock)
    assert receiver.ids() == [first]


def test_connection_error_counts_as_a_failed_attempt(ctx, clock):
    first = put(ctx.sessions, "u1", 1)

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    run(ctx, httpx.Client(transport=httpx.MockTransport(refuse)), clock)
    row = status_of(ctx.sessions, first)
    assert row.attempts == 1 and row.last_error.startswith("ConnectError")
