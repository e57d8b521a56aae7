"""Probes, metrics and the access log of `twinbill serve`."""

from __future__ import annotations

import io
import json
import logging

import pytest

from core.observability import configure_logging


@pytest.fixture
def json_log():
    out = io.StringIO()
    configure_logging(json_logs=True, level="INFO", stream=out)

    def read() -> list[dict]:
        lines = out.getvalue().splitlines()
        out.seek(0)
        out.truncate()
        return [json.loads(line) for line in lines]

    yield read
    logging.getLogger().handlers[:] = []


def test_healthz_is_alive_without_touching_anything(admin):
    admin.ctx.engine.dispose()
    assert admin.client.get("/healthz").json() == {"ok": True}


def test_readyz_names_what_is_not_reachable(admin):
    answer = admin.client.get("/readyz")
    assert answer.status_code == 503
    checks = answer.json()["checks"]
    assert checks["database"]["ok"] is True
    assert checks["new"] == {"ok": False, "error": "TWINBILL_NEW_BASE_URL is not set"}


def test_access_log_is_json_with_a_request_id_and_never_the_query_string(admin, json_log):
    json_log()  # drop what setup logged
    answer = admin.client.get(
        "/admin/users/alice.martin@example.test?token=tok_secret_123&card=4242424242424242",
        headers={"X-Request-ID": "req-abcdef12"},
        follow_redirects=False,
    )
    assert answer.headers["x-request-id"] == "req-abcdef12"
    (event,) = [e for e in json_log() if e.get("event") == "request"]
    assert event["request_id"] == "req-abcdef12"
    assert event["status"] == answer.status_code and event["method"] == "GET"
    text = json.dumps(event)
    assert "tok_secret_123" not in text and "4242424242424242" not in text
    assert "alice.martin@example.test" not in text and "a***@example.test" in event["path"]


def test_a_bad_request_id_is_replaced(admin, json_log):
    answer = admin.client.get("/healthz", headers={"X-Request-ID": "<script>"})
    assert answer.headers["x-request-id"] != "<script>"
    assert len(answer.headers["x-request-id"]) == 32


def test_a_traceback_is_one_event(json_log):
    json_log()
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        logging.getLogger("twinbill.test").exception("failed")
    (event,) = [e for e in json_log() if e.get("event") == "failed"]
    assert "ValueError: boom" in event["exception"]


def test_metrics_have_units_and_database_gauges(admin):
    from migration import cohorts

    cohorts.create(admin.ctx.sessions, "pilot", ["u_2"], actor="t")
    text = admin.client.get("/metrics").text
    assert 'twinbill_cohort_members{cohort="pilot",status="pending"} 1.0' in text
    assert "twinbill_outbox_messages" in text
    for name in (
        "twinbill_migrations_total",
        "twinbill_saga_step_duration_seconds",
        "twinbill_backend_requests_total",
        "twinbill_backend_rate_limited_total",
        "twinbill_rate_limit_requests_per_second",
    ):
        assert f"# TYPE {name.removesuffix('_total')}" in text, name
