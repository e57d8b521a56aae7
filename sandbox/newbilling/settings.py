"""Service settings, read once by the composition root (never at import time)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

DEFAULT_DATABASE_URL = "sqlite:///./newbilling.db"
DEFAULT_MAX_AMOUNT = 100_000_000


class ConfigError(Exception):
    """Raised for settings the service cannot start with; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    """Everything the app factory needs; tests build it directly."""

    api_tokens: tuple[str, ...]
    database_url: str = DEFAULT_DATABASE_URL
    webhook_url: str | None = None
    webhook_secret: str | None = None
    rate_limit: float = 0.0
    max_amount: int = DEFAULT_MAX_AMOUNT
    max_body_bytes: int = 1_000_000
    webhook_max_attempts: int = 5
    webhook_backoff_seconds: float = 0.5
    webhook_timeout_seconds: float = 5.0
    webhook_poll_seconds: float = 0.5

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Fail fast at start-up rather than on the first request."""
        if not self.api_tokens or not all(t.strip() for t in self.api_tokens):
            raise ConfigError(
                "NEWBILLING_API_TOKENS is required: a comma-separated list of bearer tokens"
            )
        if self.webhook_url and not self.webhook_secret:
            raise ConfigError(
                "NEWBILLING_WEBHOOK_SECRET is required when NEWBILLING_WEBHOOK_URL is set"
            )
        if self.rate_limit < 0:
            raise ConfigError("NEWBILLING_RATE_LIMIT must be >= 0 (0 = unlimited)")
        if self.max_amount <= 0:
            raise ConfigError("NEWBILLING_MAX_AMOUNT must be a positive integer")
        if self.webhook_max_attempts < 1:
            raise ConfigError("NEWBILLING_WEBHOOK_MAX_ATTEMPTS must be >= 1")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from ``NEWBILLING_*`` variables; non-None overrides (CLI) win."""
        env = os.environ if environ is None else environ
        tokens = tuple(t.strip() for t in env.get("NEWBILLING_API_TOKENS", "").split(",") if t)
        values: dict[str, Any] = {
            "api_tokens": tuple(t for t in tokens if t),
            "database_url": env.get("NEWBILLING_DATABASE_URL") or DEFAULT_DATABASE_URL,
            "webhook_url": env.get("NEWBILLING_WEBHOOK_URL") or None,
            "webhook_secret": env.get("NEWBILLING_WEBHOOK_SECRET") or None,
            "rate_limit": _number(env, "NEWBILLING_RATE_LIMIT", 0.0, float),
            "max_amount": _number(env, "NEWBILLING_MAX_AMOUNT", DEFAULT_MAX_AMOUNT, int),
            "webhook_max_attempts": _number(env, "NEWBILLING_WEBHOOK_MAX_ATTEMPTS", 5, int),
            "webhook_backoff_seconds": _number(
                env, "NEWBILLING_WEBHOOK_BACKOFF_SECONDS", 0.5, float
            ),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def with_overrides(self, **changes: Any) -> Settings:
        """Copy with changes; used by tests to tweak one knob."""
        return replace(self, **changes)


def _number(env: Mapping[str, str], name: str, default: Any, kind: type) -> Any:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return kind(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from exc
