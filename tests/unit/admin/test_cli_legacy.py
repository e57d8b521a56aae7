"""``twinbill legacy check`` against the in-process Stripe double (current dialect)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from admin.cli import app
from admin.cli.legacy import run_check
from core.environment import key_mode
from multiplexer.backends.stripe.backend import StripeLegacyBackend
from tests.stripe_current import configurations, shapes
from tests.stripe_current.double import StripeDouble, client_for

URL = "https://billing.example.test/webhooks/legacy"


def endpoint(double: StripeDouble, **fields: object) -> None:
    double.put(
        "webhook_endpoint",
        {
            "id": "we_1",
            "object": "webhook_endpoint",
            "url": URL,
            "status": "enabled",
            "api_version": None,
            "enabled_events": ["*"],
            "created": shapes.T0,
            **fields,
        },
    )


def world(*names: str) -> tuple[StripeDouble, StripeLegacyBackend]:
    double = StripeDouble()
    for name in names:
        configurations.CONFIGURATIONS[name](double)
    return double, StripeLegacyBackend(client_for(double), dialect="current")


def test_ready_account() -> None:
    double, backend = world("plain", "tax_inclusive", "customer_coupon")
    endpoint(double)
    report = run_check(
        backend, api_key="sk_test_x", sample=10, webhook_url=URL, probe=lambda url: 400
    )
    assert report.ready, report
    assert (report.key_mode, report.customers_read, report.customers_mapped) == ("test", 3, 3)
    assert report.api_version == "2026-10-28.endive" and report.livemode_seen == [False]
    assert report.unmapped_fields == {} and report.mapping_errors == {}
    assert len(double.writes) == 0  # reads only


def test_unmapped_fields_and_mapping_errors_are_counted() -> None:
    double, backend = world("plain", "tax_exclusive", "trial")
    endpoint(double)
    double.get("customer", "cus_plain")["loyalty_tier"] = "gold"  # a field nobody maps
    double.get("subscription", "sub_trial")["status"] = "on_vacation"  # an unknown status
    report = run_check(
        backend, api_key="rk_live_x", sample=10, webhook_url=URL, probe=lambda url: 400
    )
    assert not report.ready and report.key_mode == "live"
    assert report.unmapped_fields == {"customer.loyalty_tier": 1}
    [(error, count)] = report.mapping_errors.items()
    assert error.startswith("status: unknown value 'on_vacation'") and count == 1
    assert (report.customers_read, report.customers_mapped) == (3, 2)


@pytest.mark.parametrize(
    ("fields", "probe_status", "problem"),
    [
        (None, 400, "no webhook endpoint"),
        ({"status": "disabled"}, 400, "is disabled"),
        ({"api_version": "2019-12-03"}, 400, "other shapes"),
        ({}, 404, "answered an unsigned probe with 404"),
        ({}, None, "with None"),
    ],
)
def test_webhooks_that_do_not_reach_twinbill(fields, probe_status, problem) -> None:
    double, backend = world("plain")
    if fields is not None:
        endpoint(double, **fields)
    report = run_check(
        backend, api_key="sk_test_x", sample=1, webhook_url=URL, probe=lambda url: probe_status
    )
    assert not report.ready
    assert any(problem in p for p in report.webhook_problems), report.webhook_problems


def test_key_mode() -> None:
    assert [key_mode(k) for k in ("sk_test_1", "sk_live_1", "rk_test_1", "pk_live_1")] == [
        "test",
        "live",
        "test",
        "unknown",
    ]


def test_command_is_registered_and_needs_a_key(monkeypatch) -> None:
    monkeypatch.delenv("TWINBILL_LEGACY_API_KEY", raising=False)
    result = CliRunner().invoke(app, ["legacy", "check", "--no-probe"])
    assert result.exit_code == 2, result.output
    assert "legacy_api_key" in result.output.lower() or "legacy_api_key" in str(result.stderr)
