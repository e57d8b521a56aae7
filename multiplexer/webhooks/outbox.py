"""Delivery of canonical events to the application: signed, retried, in order per user.

Only the *head* of a user's stream (the oldest message not yet delivered) is
ever attempted, so the app never sees ``subscription.canceled`` before the
``subscription.created`` it follows. A head that exhausts its attempts turns
``dead`` and blocks the user's later messages until an operator retries it
(``retry_dead``): skipping it would deliver a later state on top of a missing
one.

Two workers may be asked to deliver the same user (the after-commit enqueue
and the sweep). A compare-and-set on ``attempts`` claims the head: the winner
counts its attempt and pushes ``next_attempt_at`` out by a lease, the loser
walks away. A worker that dies mid-request leaves a lease that expires, and
the sweep tries again: delivery is at-least-once, and ``Twinbill-Event-Id``
lets the app drop the rare duplicate.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from core import audit
from core.db import utcnow
from core.errors import ConfigurationError, IllegalTransition, InvalidInput
from core.settings import Settings
from multiplexer.models import OutboxMessage
from multiplexer.webhooks.signatures import OUT_HEADER, sign

log = logging.getLogger(__name__)

PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"
MAX_COUNTDOWN = 600.0  # seconds; far below the broker's visibility timeout (core.queue)

#: ``enqueue(user_id, countdown_seconds)``: ask a worker to deliver that user's stream.
Enqueue = Callable[[str, float], None]


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    max_attempts: int = 12
    base_delay: float = 2.0  # seconds before the 2nd attempt; doubles each time
    max_delay: float = 3600.0
    lease: float = 60.0  # a claimed head is not retried by others for this long
    batch: int = 100  # messages per task run; the rest go to a fresh task

    def backoff(self, attempts: int, rng: Callable[[], float] = random.random) -> float:
        """Exponential with "equal jitter": half fixed, half random, capped."""
        delay = min(self.max_delay, self.base_delay * 2 ** max(0, attempts - 1))
        return delay / 2 + delay / 2 * rng()


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    delivered: int = 0
    failed: int = 0
    dead: int = 0
    blocked: str | None = None  # why the stream stopped (None: nothing left)


def body_bytes(message: OutboxMessage) -> bytes:
    return json.dumps(message.body, separators=(",", ":"), sort_keys=True).encode()


def head(session: Session, user_id: str) -> OutboxMessage | None:
    return session.scalars(
        sa.select(OutboxMessage)
        .where(OutboxMessage.user_id == user_id, OutboxMessage.status != DELIVERED)
        .order_by(OutboxMessage.id)
        .limit(1)
    ).first()


def _claim(
    sessions: sessionmaker[Session], user_id: str, now: datetime, policy: DeliveryPolicy
) -> tuple[OutboxMessage | None, str | None]:
    """The due head of a user's stream, claimed for us; else why not."""
    with sessions() as session, session.begin():
        msg = head(session, user_id)
        if msg is None:
            return None, None
        if msg.status == DEAD:
            return None, f"dead message {msg.event_id} blocks the stream"
        if msg.next_attempt_at > now:
            return None, "head not due yet"
        won = session.execute(
            sa.update(OutboxMessage)
            .where(
                OutboxMessage.id == msg.id,
                OutboxMessage.status == PENDING,
                OutboxMessage.attempts == msg.attempts,
            )
            .values(
                attempts=msg.attempts + 1, next_attempt_at=now + timedelta(seconds=policy.lease)
            )
            .execution_options(synchronize_session=False)
        ).rowcount
        if won != 1:
            return None, "head claimed by another worker"
        session.expunge(msg)
        msg.attempts += 1
        return msg, None


def _post(client: httpx.Client, url: str, secret: str, msg: OutboxMessage) -> str | None:
    """One HTTP attempt; the error text (no body echo beyond a short snippet) or None."""
    body = body_bytes(msg)
    headers = {
        "Content-Type": "application/json",
        OUT_HEADER: sign(secret, body, int(time.time())),
        "Twinbill-Event-Id": msg.event_id,
        "Twinbill-Event-Type": msg.type,
    }
    try:
        response = client.post(url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}"[:500]
    if 200 <= response.status_code < 300:
        return None
    return f"HTTP {response.status_code}"


def _settle(
    sessions: sessionmaker[Session],
    msg: OutboxMessage,
    error: str | None,
    now: datetime,
    policy: DeliveryPolicy,
) -> tuple[str, float]:
    """Record the attempt's outcome; the new status and the delay before the next try."""
    with sessions() as session, session.begin():
        row = session.get(OutboxMessage, msg.id, with_for_update=True)
        if row is None or row.status != PENDING:
            return DELIVERED if row is None else row.status, 0.0
        if error is None:
            row.status, row.delivered_at, row.last_error = DELIVERED, now, None
            return DELIVERED, 0.0
        row.last_error = error
        if row.attempts >= policy.max_attempts:
            row.status = DEAD
            log.error(
                "outbox message %s dead after %d attempts (%s); user stream blocked",
                row.event_id,
                row.attempts,
                error,
            )
            return DEAD, 0.0
        delay = policy.backoff(row.attempts)
        row.next_attempt_at = now + timedelta(seconds=delay)
        log.warning(
            "outbox message %s attempt %d failed (%s); retry in %.0fs",
            row.event_id,
            row.attempts,
            error,
            delay,
        )
        return PENDING, delay


def deliver_user(
    sessions: sessionmaker[Session],
    settings: Settings,
    user_id: str,
    *,
    client: httpx.Client,
    enqueue: Enqueue,
    policy: DeliveryPolicy | None = None,
    now: Callable[[], datetime] = utcnow,
) -> DeliveryReport:
    """Deliver a user's due messages in order, stopping at the first that fails."""
    policy = policy or DeliveryPolicy()
    if not settings.app_webhook_url or settings.app_webhook_secret is None:
        raise ConfigurationError(
            "missing setting(s): TWINBILL_APP_WEBHOOK_URL, TWINBILL_APP_WEBHOOK_SECRET "
            "(events stay in the outbox until they are set)"
        )
    url, secret = settings.app_webhook_url, settings.app_webhook_secret.get_secret_value()
    delivered = 0
    for _ in range(policy.batch):
        msg, why = _claim(sessions, user_id, now(), policy)
        if msg is None:
            return DeliveryReport(delivered=delivered, blocked=why)
        error = _post(client, url, secret, msg)
        status, delay = _settle(sessions, msg, error, now(), policy)
        if status == DEAD:
            return DeliveryReport(delivered=delivered, dead=1, blocked="dead")
        if status == PENDING:
            if delay <= MAX_COUNTDOWN:  # longer waits: the periodic sweep picks it up
                enqueue(user_id, delay)
            return DeliveryReport(delivered=delivered, failed=1, blocked="retrying")
        delivered += 1
    enqueue(user_id, 0.0)  # more than a batch: continue in a fresh task
    return DeliveryReport(delivered=delivered, blocked="batch limit")


def due_users(session: Session, now: datetime | None = None, limit: int = 1000) -> list[str]:
    """Users whose stream head is pending and due (dead heads wait for an operator)."""
    now = now or utcnow()
    heads = (
        sa.select(OutboxMessage.user_id, sa.func.min(OutboxMessage.id).label("head_id"))
        .where(OutboxMessage.status != DELIVERED)
        .group_by(OutboxMessage.user_id)
        .subquery()
    )
    rows = session.execute(
        sa.select(OutboxMessage.user_id)
        .join(heads, heads.c.head_id == OutboxMessage.id)
        .where(OutboxMessage.status == PENDING, OutboxMessage.next_attempt_at <= now)
        .order_by(OutboxMessage.next_attempt_at)
        .limit(limit)
    ).scalars()
    return list(rows)


def sweep(sessions: sessionmaker[Session], enqueue: Enqueue, now: datetime | None = None) -> int:
    """Enqueue every due stream: a lost task or a crashed worker never loses a message."""
    with sessions() as session:
        users = due_users(session, now)
    for user_id in users:
        enqueue(user_id, 0.0)
    return len(users)


# -- operator surface (admin UI, runbook) -------------------------------------------


def dead_letters(session: Session, limit: int = 200) -> list[OutboxMessage]:
    return list(
        session.scalars(
            sa.select(OutboxMessage)
            .where(OutboxMessage.status == DEAD)
            .order_by(OutboxMessage.id)
            .limit(limit)
        )
    )


def blocked_behind(session: Session, message: OutboxMessage) -> int:
    """How many later messages of the same user wait behind a dead one."""
    return int(
        session.scalar(
            sa.select(sa.func.count())
            .select_from(OutboxMessage)
            .where(
                OutboxMessage.user_id == message.user_id,
                OutboxMessage.id > message.id,
                OutboxMessage.status == PENDING,
            )
        )
        or 0
    )


def retry_dead(
    session: Session,
    message_id: int,
    *,
    actor: str = "system:runbook",
    reason: str = "retry dead webhook delivery",
    now: datetime | None = None,
) -> OutboxMessage:
    """Put a dead message back at the head of its stream (enqueue a delivery after commit)."""
    msg = session.get(OutboxMessage, message_id, with_for_update=True)
    if msg is None:
        raise InvalidInput(f"no outbox message {message_id}")
    if msg.status != DEAD:
        raise IllegalTransition(
            f"outbox message {message_id} is {msg.status}, not dead: nothing to retry"
        )
    before = _snapshot(msg)
    msg.status, msg.attempts, msg.next_attempt_at = PENDING, 0, now or utcnow()
    audit.record(
        session,
        actor=actor,
        action="webhook.retry",
        resource_type="outbox",
        resource_id=str(msg.id),
        before=before,
        after=_snapshot(msg),
        reason=reason,
    )
    session.flush()
    return msg


def _snapshot(msg: OutboxMessage) -> dict[str, Any]:
    return {
        "event_id": msg.event_id,
        "user_id": msg.user_id,
        "type": msg.type,
        "status": msg.status,
        "attempts": msg.attempts,
        "last_error": msg.last_error,
    }
