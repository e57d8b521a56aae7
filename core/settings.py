"""Settings from the environment (prefix ``TWINBILL_``); secrets never from files in the repo."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from core.errors import ConfigurationError


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TWINBILL_", extra="ignore", populate_by_name=True)

    database_url: str = "sqlite:///./twinbill.db"
    redis_url: str | None = None  # unset: in-process cache, limiter and Celery broker

    legacy_backend: str = "stripe"
    legacy_api_key: SecretStr | None = None
    legacy_api_base: str | None = None  # e.g. http://127.0.0.1:8420 for localstripe
    legacy_webhook_secret: SecretStr | None = None
    legacy_rate_limit: float = Field(default=20.0, gt=0)  # requests/second, all workers

    new_backend: str = "http"
    new_base_url: str | None = None
    new_api_token: SecretStr | None = None
    new_webhook_secret: SecretStr | None = None
    new_rate_limit: float = Field(default=50.0, gt=0)

    http_timeout: float = Field(default=10.0, gt=0)
    max_amount_major: int = Field(default=1_000_000, gt=0)  # ceiling for manual money entry
    renewal_guard_seconds: int = Field(default=7200, ge=0, alias="TWINBILL_RENEWAL_GUARD")
    # after the pivot a transient failure is retried for ever, the wait doubling up to this
    post_pivot_backoff_max: float = Field(default=3600.0, gt=0)
    # -- the re-check from legacy events (multiplexer/change_feed.py; docs/runbook.md) --
    #: auto: prove "unchanged since the snapshot" from the legacy event stream where it is
    #: complete (else a full re-read); off: always re-read the user's whole legacy state
    event_recheck: Literal["auto", "off"] = "auto"
    event_refresh_seconds: float = Field(default=1.0, ge=0)  # at most one event read per this
    event_settle_seconds: float = Field(default=1.0, ge=0)  # events this young may be unlisted
    event_clock_margin_seconds: float = Field(default=5.0, ge=0)  # legacy clock vs ours

    # -- bulk snapshot reads (docs/architecture.md "Bulk reads") --
    #: a cohort's snapshots from one account-wide legacy read instead of one per user:
    #: auto (when cheaper by estimate) | on | off
    bulk_reads: Literal["auto", "on", "off"] = "auto"
    #: seconds a prefetched snapshot stays good; an older one is re-read per user. A
    #: cohort's staged account read serves its chunks for half of it (migration.stage).
    #: The re-check proves any snapshot current before the pivot (events or a full re-read),
    #: so age costs no correctness, only re-reads of users who changed meanwhile. 6 h: a
    #: 600,000-customer account costs some 90,000 list pages, so a cohort read again every
    #: 15 minutes (1800 s / 2) would spend about 3 requests a user on reading the account
    snapshot_max_age: float = Field(default=21600.0, ge=0)
    bulk_chunk: int = Field(default=1000, ge=1)  # cohort members per bulk read

    app_webhook_url: str | None = None
    app_webhook_secret: SecretStr | None = None

    secret_key: SecretStr | None = None  # admin sessions and CSRF
    session_max_age: int = Field(default=8 * 3600, gt=0)
    # X-Forwarded-For is believed only from these peers (comma-separated IPs/CIDRs; none by default)
    trusted_proxies: str = ""
    admin_locale: str = "en_US"  # how the admin formats money and numbers (babel locale)

    # -- shadow rehearsal (`twinbill cohort shadow`) --
    #: a shadowed user's read is compared with the new system's answer in the background:
    #: at most this many at once (more are dropped, counted), each waited for this long
    shadow_read_concurrency: int = Field(default=4, ge=1, le=64)
    shadow_read_timeout: float = Field(default=2.0, gt=0)

    # -- workers and beat (docs/runbook.md "a worker died") --
    #: a migration whose heartbeat is older than this is handed to another worker; the
    #: saga heartbeats every third of it; worst-case handover = lease + reaper period
    lease_seconds: int = Field(default=30, ge=3)
    reaper_every: float = Field(default=10.0, gt=0)  # seconds between beat's reaper runs
    beat_schedule_file: str | None = None  # default: <tmpdir>/twinbill-celerybeat-schedule
    metrics_port: int | None = Field(default=None, ge=1, le=65535)  # worker/beat /metrics

    @field_validator("database_url")
    @classmethod
    def _db_url(cls, value: str) -> str:
        try:
            make_url(value)
        except ArgumentError as exc:
            raise ValueError(f"not a database URL: {exc}") from None
        return value

    @field_validator("redis_url", "legacy_api_base", "new_base_url", "app_webhook_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if "://" not in value:
            raise ValueError(f"{value!r} is not a URL (expected scheme://host...)")
        return value.rstrip("/")

    def require(self, *names: str) -> None:
        """Fail naming every missing variable an operation needs."""
        missing = [f"TWINBILL_{n.upper()}" for n in names if getattr(self, n) in (None, "")]
        if missing:
            raise ConfigurationError(f"missing setting(s): {', '.join(missing)}")


def load_settings(**overrides: object) -> Settings:
    """Build settings, turning pydantic's error into one naming the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        parts = []
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else "?"
            var = field if field.startswith("TWINBILL_") else f"TWINBILL_{field.upper()}"
            parts.append(f"{var}: {err['msg']}")
        raise ConfigurationError("invalid settings: " + "; ".join(parts)) from None
