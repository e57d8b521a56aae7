"""Backends chosen by name from explicit dicts; SDK clients built once from Settings.

``TWINBILL_LEGACY_BACKEND`` picks the legacy adapter: ``stripe`` (real Stripe at
the SDK's API version) or ``localstripe`` (the same adapter speaking localstripe's
older request dialect). ``TWINBILL_NEW_BACKEND=http`` picks the HTTP adapter.
Nothing is built at import time: the composition root calls ``build_*``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import httpx
import stripe

from core.errors import ConfigurationError
from core.settings import Settings
from multiplexer.backends.base import LegacyBillingBackend, NewBillingBackend, Throttle
from multiplexer.backends.http_new import HttpNewBackend
from multiplexer.backends.stripe.backend import StripeLegacyBackend

LEGACY_BACKENDS: dict[str, Callable[..., Any]] = {
    "stripe": partial(StripeLegacyBackend, dialect="current"),
    "localstripe": partial(StripeLegacyBackend, dialect="localstripe"),
}
NEW_BACKENDS: dict[str, Callable[..., Any]] = {"http": HttpNewBackend}


def _pick(table: dict[str, Callable[..., Any]], name: str, var: str) -> Callable[..., Any]:
    try:
        return table[name]
    except KeyError:
        raise ConfigurationError(
            f"{var}={name!r} is not a known backend (choose one of {', '.join(sorted(table))})"
        ) from None


def stripe_client(settings: Settings) -> stripe.StripeClient:
    """No SDK retries: retries belong to the migration engine and the shared rate limiter."""
    settings.require("legacy_api_key")
    assert settings.legacy_api_key is not None
    base = settings.legacy_api_base
    kwargs: dict[str, Any] = {}
    if base:
        kwargs["base_addresses"] = {"api": base, "files": base, "connect": base}
    return stripe.StripeClient(
        settings.legacy_api_key.get_secret_value(),
        max_network_retries=0,
        http_client=stripe.RequestsClient(timeout=settings.http_timeout),
        **kwargs,
    )


def http_client(settings: Settings) -> httpx.Client:
    settings.require("new_base_url", "new_api_token")
    assert settings.new_api_token is not None and settings.new_base_url is not None
    return httpx.Client(
        base_url=settings.new_base_url,
        timeout=settings.http_timeout,
        headers={"Authorization": f"Bearer {settings.new_api_token.get_secret_value()}"},
    )


def build_legacy(settings: Settings, throttle: Throttle) -> LegacyBillingBackend:
    factory = _pick(LEGACY_BACKENDS, settings.legacy_backend, "TWINBILL_LEGACY_BACKEND")
    backend: LegacyBillingBackend = factory(stripe_client(settings), throttle)
    return backend


def build_new(settings: Settings, throttle: Throttle) -> NewBillingBackend:
    factory = _pick(NEW_BACKENDS, settings.new_backend, "TWINBILL_NEW_BACKEND")
    backend: NewBillingBackend = factory(http_client(settings), throttle)
    return backend
