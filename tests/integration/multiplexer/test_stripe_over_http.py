"""The production wiring of the current Stripe dialect, over a real socket.

The other current-dialect tests hand the SDK the double as its HTTP client (the seam).
Production builds ``stripe.RequestsClient`` against ``TWINBILL_LEGACY_API_BASE``
(``registry.stripe_client``). Here that very client reads the same double served over
loopback HTTP (``tests/stripe_current/served.py``, what the throughput bench and its
worker processes use), so encoding, headers and answers cross a real socket: every
configuration's snapshot and next-charge preview must equal the seam's, and a cancel
must be one request that carries its idempotency key and migration mark to the server.
"""

from __future__ import annotations

import pytest

from core.settings import load_settings
from migration import records
from multiplexer.backends import registry
from multiplexer.backends.base import UserRef, no_throttle
from multiplexer.backends.stripe.backend import StripeLegacyBackend
from tests.stripe_current import configurations, shapes
from tests.stripe_current.double import StripeDouble, client_for
from tests.stripe_current.served import API_KEY, ServedDouble

pytestmark = pytest.mark.skipif(not shapes.available(), reason="Stripe's fixtures are missing")


def _wired(url: str) -> StripeLegacyBackend:
    settings = load_settings(legacy_backend="stripe", legacy_api_base=url, legacy_api_key=API_KEY)
    backend = registry.build_legacy(settings, no_throttle)
    assert isinstance(backend, StripeLegacyBackend) and backend.dialect == "current"
    return backend


def test_every_configuration_reads_over_http_as_at_the_seam() -> None:
    double = StripeDouble()
    customers = {n: seed(double) for n, seed in configurations.CONFIGURATIONS.items()}
    seam = StripeLegacyBackend(client_for(double), dialect="current")
    with ServedDouble(double) as url:
        wired = _wired(url)
        before = len(double.requests)
        for name, cid in customers.items():
            ref = UserRef(f"u-{name}", cid)
            over_http, at_seam = wired.snapshot(ref), seam.snapshot(ref)
            assert over_http.objects == at_seam.objects, name
            assert records.content_hash(over_http.objects) == records.content_hash(at_seam.objects)
            if name in configurations.UNMAPPABLE:
                continue
            assert wired.map_snapshot(over_http) == seam.map_snapshot(at_seam), name
            assert wired.preview_next_charges(ref) == seam.preview_next_charges(ref), name
        assert len(double.requests) > before  # the socket path reached the server


def test_a_cancel_over_http_is_one_marked_request_and_its_retry_is_replayed() -> None:
    double = StripeDouble()
    cid = configurations.seed_plain(double)
    (sub,) = [s for s in double.all("subscription") if s["customer"] == cid]
    with ServedDouble(double) as url:
        wired = _wired(url)
        ref = UserRef("u-plain", cid)
        sent = len(double.requests)
        canceled = wired.cancel_for_migration(
            ref, sub["id"], migration_id="mig-1", idempotency_key="mig-1:cancel:1", known_live=True
        )
        assert len(double.requests) == sent + 1  # one request, no read first
        writes = len(double.writes)
        again = wired.cancel_for_migration(
            ref, sub["id"], migration_id="mig-1", idempotency_key="mig-1:cancel:1", known_live=True
        )
    stored = double.get("subscription", sub["id"])
    assert canceled.status.value == again.status.value == stored["status"] == "canceled"
    assert stored["cancellation_details"]["comment"] == "twinbill_migration:mig-1"
    assert len(double.writes) == writes  # the retry under the same key changed nothing
