"""Webhook fan-in (both billing systems) and fan-out (the application), via inbox and outbox.

``inbound`` verifies, stores, normalises and decides; ``normalise`` is the pure
mapping to canonical events; ``outbox`` delivers, signed and in order per user;
``router`` is the FastAPI entry point. Operator views: ``inbound.unknown_events``,
``outbox.dead_letters`` and ``outbox.retry_dead``.
"""

from __future__ import annotations
