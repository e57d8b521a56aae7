"""Outbound signed webhooks through a transactional outbox.

Events are inserted into ``nb_outbox`` in the same transaction as the change
(so an event exists if and only if the change committed) and delivered by one
background thread, never on the request path. Delivery is in order per user: a
user's later events wait while an earlier one is backing off, because the
orchestrator must never see ``subscription.canceled`` before
``subscription.created``. After ``max_attempts`` failures an event is marked
failed (kept, with ``last_error``) and the user's queue moves on.

Signature: ``Newbilling-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret,
f"{t}.{raw_body}")>`` — the Stripe scheme, so receivers can reject replays by ``t``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from . import models as m
from .clock import fmt, utcnow
from .settings import Settings

log = logging.getLogger(__name__)
SIGNATURE_HEADER = "Newbilling-Signature"


def sign(secret: str, body: bytes, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(secret: str, body: bytes, header: str, tolerance: int = 300) -> bool:
    """Reference verifier (used by tests; receivers do the same)."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        ts = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(time.time() - ts) > tolerance:
        return False
    expected = sign(secret, body, ts).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


class Outbox:
    """Writes events into the caller's session; a no-op when no webhook URL is configured."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._wake = threading.Event()

    def emit(
        self,
        session: Session,
        *,
        user_id: str,
        type_: str,
        obj: dict[str, Any],
        cause: str = "api",
        import_id: str | None = None,
    ) -> None:
        if not self.enabled:
            return
        now = utcnow()
        event_id = m.new_id("evt")
        event: dict[str, Any] = {
            "id": event_id,
            "type": type_,
            "created": fmt(now),
            "user_id": user_id,
            "cause": cause,
            "data": {"object": obj},
        }
        if import_id is not None:
            event["import_id"] = import_id
        session.add(
            m.OutboxEvent(
                event_id=event_id,
                user_id=user_id,
                type=type_,
                body=json.dumps(event, separators=(",", ":")),
                created_at=now,
                attempts=0,
                next_attempt_at=now,
            )
        )

    def notify(self) -> None:
        """Wake the dispatcher after a commit so delivery starts promptly."""
        self._wake.set()

    def wait(self, timeout: float) -> None:
        self._wake.wait(timeout)
        self._wake.clear()


class Dispatcher(threading.Thread):
    """Delivers outbox rows; one per process, started and stopped by the app lifespan."""

    def __init__(self, settings: Settings, sessions: sessionmaker[Session], outbox: Outbox) -> None:
        super().__init__(name="newbilling-webhooks", daemon=True)
        assert settings.webhook_url and settings.webhook_secret
        self.url, self.secret = settings.webhook_url, settings.webhook_secret
        self.settings, self.sessions, self.outbox = settings, sessions, outbox
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()
        self.outbox.notify()
        self.join(timeout=10)

    def run(self) -> None:
        with httpx.Client(timeout=self.settings.webhook_timeout_seconds) as client:
            while not self._halt.is_set():
                try:
                    busy = self.deliver_due(client)
                except Exception:  # noqa: BLE001 - keep the thread alive (DB hiccup etc.)
                    log.exception("webhook dispatcher pass failed")
                    busy = False
                if not busy:
                    self.outbox.wait(self.settings.webhook_poll_seconds)

    def deliver_due(self, client: httpx.Client) -> bool:
        """One pass over pending events; True if something was attempted."""
        with self.sessions() as session:
            rows = session.scalars(
                select(m.OutboxEvent)
                .where(m.OutboxEvent.delivered_at.is_(None), m.OutboxEvent.failed_at.is_(None))
                .order_by(m.OutboxEvent.id)
                .limit(200)
            ).all()
            session.expunge_all()
        blocked: set[str] = set()
        attempted = False
        for row in rows:
            if self._halt.is_set():
                break
            if row.user_id in blocked:
                continue
            if row.next_attempt_at > datetime.now(UTC):
                blocked.add(row.user_id)  # keep per-user order: wait for this one first
                continue
            attempted = True
            if not self._attempt(client, row):
                blocked.add(row.user_id)
        return attempted

    def _attempt(self, client: httpx.Client, row: m.OutboxEvent) -> bool:
        body = row.body.encode()
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(self.secret, body, int(time.time())),
        }
        error: str | None = None
        try:
            response = client.post(self.url, content=body, headers=headers)
            if response.status_code >= 300:
                error = f"HTTP {response.status_code}: {response.text[:200]}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        with self.sessions() as session, session.begin():
            stored = session.get(m.OutboxEvent, row.id)
            if stored is None:  # wiped meanwhile (tests)
                return True
            stored.attempts += 1
            now = datetime.now(UTC)  # sub-second precision: backoffs can be shorter than 1s
            if error is None:
                stored.delivered_at, stored.last_error = now, None
                return True
            stored.last_error = error
            if stored.attempts >= self.settings.webhook_max_attempts:
                stored.failed_at = now
                log.warning("webhook %s gave up after %s attempts", row.event_id, stored.attempts)
                return True  # dead-lettered: later events of this user may proceed
            delay = self.settings.webhook_backoff_seconds * 2 ** (stored.attempts - 1)
            stored.next_attempt_at = now + timedelta(seconds=delay)
            return False
