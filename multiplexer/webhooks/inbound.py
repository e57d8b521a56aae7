"""Incoming webhooks: verify, store, normalise, decide — one transaction per event.

A verified legacy event also marks what it names as changed in the legacy change
feed (``multiplexer.change_feed``), in the same transaction.

Every verified event is kept in ``inbound_events`` whatever its fate
(``forwarded``, ``suppressed``, ``unknown_user``, ``ignored``), so an operator
can always answer "did twinbill see it, and what did it do with it?". The
unique (provider, event id) turns a provider's retry into a no-op.

A forwarded event's outbox row is written in the same transaction as the inbox
row; the delivery task is enqueued only after the commit (a task that runs
before the commit would find nothing). If the enqueue is lost the periodic
sweep still delivers.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from core.errors import ConfigurationError
from core.observability import WEBHOOKS
from core.settings import Settings
from multiplexer.change_feed import mark_event
from multiplexer.models import InboundEvent, OutboxMessage, Route
from multiplexer.webhooks import normalise as nz
from multiplexer.webhooks.signatures import (
    LEGACY_HEADER,
    NEW_HEADER,
    SignatureError,
    verify_hmac,
    verify_stripe,
)

log = logging.getLogger(__name__)

FORWARDED, SUPPRESSED, UNKNOWN_USER, IGNORED, DUPLICATE = (
    "forwarded",
    "suppressed",
    "unknown_user",
    "ignored",
    "duplicate",
)
MAX_BODY = 1_000_000  # bytes; larger bodies are refused with 413 before anything is parsed
SIGNATURE_HEADERS = {nz.LEGACY: LEGACY_HEADER, nz.NEW: NEW_HEADER}


class WebhookRejected(Exception):
    """The request is refused (nothing stored); ``status`` is the HTTP answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class Decision:
    disposition: str
    canonical_type: str | None = None
    reason: str | None = None
    body: dict[str, Any] | None = None  # the canonical event, when forwarded


@dataclass(frozen=True, slots=True)
class Outcome:
    disposition: str
    event_id: str
    user_id: str | None = None
    canonical_id: str | None = None


# -- verification and parsing -------------------------------------------------------


def verify(settings: Settings, provider: str, body: bytes, header: str | None) -> None:
    secret = (
        settings.legacy_webhook_secret if provider == nz.LEGACY else settings.new_webhook_secret
    )
    if secret is None or not secret.get_secret_value():
        var = "LEGACY" if provider == nz.LEGACY else "NEW"
        raise ConfigurationError(f"missing setting(s): TWINBILL_{var}_WEBHOOK_SECRET")
    check = verify_stripe if provider == nz.LEGACY else verify_hmac
    try:
        check(secret.get_secret_value(), body, header)
    except SignatureError as exc:
        raise WebhookRejected(400, f"bad {SIGNATURE_HEADERS[provider]}: {exc}") from None


def parse(body: bytes) -> dict[str, Any]:
    try:
        event = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise WebhookRejected(400, "body is not valid JSON") from None
    if not isinstance(event, dict):
        raise WebhookRejected(400, "event must be a JSON object")
    for key in ("id", "type"):
        if not isinstance(event.get(key), str) or not event[key]:
            raise WebhookRejected(400, f"event has no {key!r}")
    if len(event["id"]) > 120 or len(event["type"]) > 80:
        raise WebhookRejected(400, "event id or type too long")
    return event


#: Route states in which the legacy system only changes because the saga changed it.
LOCKED_BY_MIGRATION = frozenset({"migrating", "failed"})

# -- deciding an event's fate (pure given the route and past suppressions) ------------


def migration_reason(
    provider: str, event: dict[str, Any], route: Route | None, canceled_by_migration: frozenset[str]
) -> str | None:
    """Why this event was caused by twinbill's own migration (None: it was not)."""
    if provider == nz.NEW:
        if nz.new_migration_caused(event):
            return "caused by a migration import or rollback (cause=import|rollback, import.*)"
        return None
    if nz.legacy_migration_flagged(event):
        return f"legacy subscription marked {nz.MIGRATION_FLAG!r} by the migration's cancel step"
    if route is None or route.state not in LOCKED_BY_MIGRATION:
        return None
    if nz.legacy_rollback_flagged(event):  # after the flip, its renewals are the user's own
        return f"legacy subscription re-created by a rollback ({nz.ROLLBACK_FLAG!r}), user locked"
    # While a user migrates, the facade refuses writes and the saga checked that legacy
    # was unchanged just before its cancel step: a cancellation now is the saga's own
    # (localstripe cannot carry the metadata flag: docs/architecture.md, "Webhooks").
    # A `failed` route is always one that failed *after* the cancel step (failures before
    # it are compensated back to `legacy`), so its late cancel events are the saga's too.
    if event.get("type") == "customer.subscription.deleted":
        return f"legacy subscription canceled while the user is {route.state} (the cancel step)"
    sub = nz.legacy_subscription_id(event)
    if sub is not None and sub in canceled_by_migration:
        return f"concerns legacy subscription {sub} canceled by the migration"
    return None


def decide(
    provider: str,
    event: dict[str, Any],
    route: Route | None,
    canceled_by_migration: frozenset[str] = frozenset(),
) -> Decision:
    canonical = nz.normalise(provider, event)
    money = canonical.type in nz.MONEY_TYPES
    why = migration_reason(provider, event, route, canceled_by_migration)
    # imported history is a copy of what the legacy side already reported: never forward
    # it; a legacy payment on a subscription the migration canceled is still real money
    if why is not None and (provider == nz.NEW or not money):
        return Decision(SUPPRESSED, canonical.type, why)
    if canonical.type is None:
        return Decision(IGNORED, None, canonical.reason)
    if route is None:
        return Decision(UNKNOWN_USER, canonical.type, "no route for this user")
    if route.system != provider and not money:
        return Decision(
            SUPPRESSED,
            canonical.type,
            f"from {provider}, but the user's system of record is {route.system}",
        )
    return Decision(
        FORWARDED,
        canonical.type,
        None,
        nz.canonical_event(provider, event, route.user_id, canonical),
    )


def find_route(session: Session, provider: str, event: dict[str, Any]) -> Route | None:
    if provider == nz.LEGACY:
        customer = nz.legacy_customer_id(event)
        if customer is None:
            return None
        return session.scalars(sa.select(Route).where(Route.legacy_customer_id == customer)).first()
    user_id = event.get("user_id")
    return session.get(Route, user_id) if isinstance(user_id, str) and user_id else None


def canceled_by_migration(session: Session, user_id: str) -> frozenset[str]:
    """Legacy subscriptions whose deletion we already suppressed as migration-caused."""
    payloads = session.scalars(
        sa.select(InboundEvent.payload).where(
            InboundEvent.provider == nz.LEGACY,
            InboundEvent.user_id == user_id,
            InboundEvent.type == "customer.subscription.deleted",
            InboundEvent.disposition == SUPPRESSED,
        )
    )
    return frozenset(s for p in payloads if (s := nz.legacy_subscription_id(p)))


def _user_hint(provider: str, event: dict[str, Any]) -> str | None:
    if provider == nz.LEGACY:
        return nz.legacy_customer_id(event)
    uid = event.get("user_id")
    return uid if isinstance(uid, str) else None


# -- storing --------------------------------------------------------------------------


def _store(session: Session, provider: str, event: dict[str, Any]) -> Outcome:
    if provider == nz.LEGACY:  # the re-check's change feed: what it names changed (cheap)
        mark_event(session, event)
    route = find_route(session, provider, event)
    past: frozenset[str] = frozenset()
    if route is not None and provider == nz.LEGACY and route.state in LOCKED_BY_MIGRATION:
        past = canceled_by_migration(session, route.user_id)
    decision = decide(provider, event, route, past)
    if (
        decision.body is not None
        and session.scalar(
            sa.select(OutboxMessage.id).where(OutboxMessage.event_id == decision.body["id"])
        )
        is not None
    ):
        decision = Decision(
            IGNORED,
            decision.canonical_type,
            f"same canonical event already forwarded as {decision.body['id']}",
        )
    session.add(
        InboundEvent(
            provider=provider,
            provider_event_id=event["id"],
            type=event["type"],
            user_id=route.user_id if route else None,
            canonical_type=decision.canonical_type,
            disposition=decision.disposition,
            reason=decision.reason,
            payload=event,
        )
    )
    body = decision.body
    if body is not None:
        session.add(
            OutboxMessage(
                event_id=body["id"],
                user_id=body["user_id"],
                type=body["type"],
                body=body,
                status="pending",
                attempts=0,
            )
        )
    session.flush()
    return Outcome(
        decision.disposition,
        event["id"],
        route.user_id if route else None,
        body["id"] if body else None,
    )


def _already(session: Session, provider: str, event_id: str) -> bool:
    return (
        session.scalar(
            sa.select(InboundEvent.id).where(
                InboundEvent.provider == provider, InboundEvent.provider_event_id == event_id
            )
        )
        is not None
    )


def store(sessions: sessionmaker[Session], provider: str, event: dict[str, Any]) -> Outcome:
    """Record the event and its fate; a replay (same provider event id) changes nothing."""
    try:
        with sessions() as session, session.begin():
            if _already(session, provider, event["id"]):
                return Outcome(DUPLICATE, event["id"])
            return _store(session, provider, event)
    except IntegrityError:  # a concurrent delivery of the same event won the race
        with sessions() as session:
            if _already(session, provider, event["id"]):
                return Outcome(DUPLICATE, event["id"])
        raise


def receive(
    sessions: sessionmaker[Session],
    settings: Settings,
    provider: str,
    body: bytes,
    signature: str | None,
    enqueue: Callable[[str], None],
    on_legacy_event: Callable[[str], None] | None = None,
) -> Outcome:
    """The whole inbound path; raises ``WebhookRejected`` (nothing stored) on bad input.

    ``on_legacy_event(user_id)`` is told of every new legacy event about a known user
    after it is stored (the shadow rehearsal re-syncs a shadowed user); its failure is
    logged, never the sender's problem."""
    if len(body) > MAX_BODY:
        raise WebhookRejected(413, f"body over {MAX_BODY} bytes")
    verify(settings, provider, body, signature)
    event = parse(body)
    outcome = store(sessions, provider, event)
    WEBHOOKS.labels(provider, outcome.disposition).inc()
    if outcome.disposition == UNKNOWN_USER:
        hint = _user_hint(provider, event)
        log.warning(
            "webhook %s %s (%s) for unknown user %s kept as unknown_user",
            provider,
            event["id"],
            event["type"],
            hint or "-",
        )
    else:
        log.info(
            "webhook %s %s (%s): %s", provider, event["id"], event["type"], outcome.disposition
        )
    if on_legacy_event is not None and provider == nz.LEGACY and outcome.user_id is not None:
        try:
            on_legacy_event(outcome.user_id)
        except Exception:  # noqa: BLE001 - stored and committed; the daily re-sync catches up
            log.exception("legacy event %s: the shadow re-sync could not be scheduled", event["id"])
    if outcome.disposition == FORWARDED and outcome.user_id is not None:
        try:
            enqueue(outcome.user_id)
        except Exception:  # noqa: BLE001 - stored and committed: the sweep will deliver it
            log.exception(
                "could not enqueue delivery for %s; the sweep will pick it up", outcome.canonical_id
            )
    return outcome


def unknown_events(
    session: Session, limit: int = 200, provider: str | None = None
) -> list[InboundEvent]:
    """Events about users twinbill does not know (kept for an operator to resolve)."""
    query = sa.select(InboundEvent).where(InboundEvent.disposition == UNKNOWN_USER)
    if provider is not None:
        query = query.where(InboundEvent.provider == provider)
    return list(session.scalars(query.order_by(InboundEvent.id.desc()).limit(limit)))
