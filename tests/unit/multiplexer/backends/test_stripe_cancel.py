"""The migration's legacy cancel: one request per live subscription on the current API."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from multiplexer.backends.base import UserRef
from multiplexer.backends.stripe_legacy import StripeLegacyBackend
from multiplexer.webhooks.normalise import legacy_migration_flagged

T0 = 1_764_000_000


def _canceled(sid: str, **extra) -> dict:
    return {
        "id": sid,
        "object": "subscription",
        "status": "canceled",
        "currency": "eur",
        "created": T0,
        "current_period_start": T0,
        "current_period_end": T0 + 30 * 86_400,
        "items": {"object": "list", "has_more": False, "data": []},
        "metadata": {},
        **extra,
    }


def _backend(dialect: str):
    requests: list[tuple[str, str, dict]] = []

    def update(sid, params, options):
        requests.append(("update", sid, params))
        return {**_canceled(sid), "status": "active", "metadata": params.get("metadata", {})}

    def cancel(sid, params, options):
        requests.append(("cancel", sid, params))
        return _canceled(sid, cancellation_details=params.get("cancellation_details"))

    def retrieve(*args, **kwargs):  # the old path read the subscription first
        requests.append(("retrieve", args[0], {}))
        return {**_canceled(args[0]), "status": "active"}

    v1 = SimpleNamespace(
        subscriptions=SimpleNamespace(update=update, cancel=cancel, retrieve=retrieve)
    )
    return StripeLegacyBackend(SimpleNamespace(v1=v1), dialect=dialect), requests


def test_current_api_cancel_is_one_request_that_carries_the_migration_mark():
    backend, requests = _backend("current")
    sub = backend.cancel_for_migration(
        UserRef("u1", "cus_1"), "sub_1", migration_id="mig_9", idempotency_key="k"
    )
    assert [r[0] for r in requests] == ["cancel"]  # before: retrieve + update + cancel
    params = requests[0][2]
    assert params["cancellation_details"] == {"comment": "twinbill_migration:mig_9"}
    assert (params["invoice_now"], params["prorate"]) == (False, False)
    assert sub.status.value == "canceled"
    # the resulting webhook is recognised as caused by the migration, not a real churn
    event = {
        "type": "customer.subscription.deleted",
        "data": {"object": _canceled("sub_1", cancellation_details=params["cancellation_details"])},
    }
    assert legacy_migration_flagged(event)


def test_localstripe_marks_in_metadata_because_its_delete_ignores_parameters():
    backend, requests = _backend("localstripe")
    backend.cancel_for_migration(
        UserRef("u1", "cus_1"), "sub_1", migration_id="mig_9", idempotency_key="k"
    )
    assert [r[0] for r in requests] == ["update", "cancel"]
    assert requests[0][2] == {"metadata": {"twinbill_migration": "mig_9"}}


@pytest.mark.parametrize("comment", [None, "customer asked", "twinbill_migrationX"])
def test_a_real_cancellation_is_not_mistaken_for_the_migration(comment):
    obj = _canceled("sub_1", cancellation_details={"comment": comment})
    assert not legacy_migration_flagged({"data": {"object": obj}})
