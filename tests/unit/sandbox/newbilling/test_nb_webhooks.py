"""Outbound webhooks: signed, ordered, retried, with cause=import on activation."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from nb_helpers import AUTH, post_import
from sqlalchemy import select

from sandbox.newbilling import models as m
from sandbox.newbilling.samples import sample_import
from sandbox.newbilling.schemas_out import EventOut
from sandbox.newbilling.webhooks import SIGNATURE_HEADER, verify

SECRET = "whsec_test"


class Receiver:
    """A tiny real HTTP endpoint; answers 500 to the first ``fail_first`` deliveries."""

    def __init__(self, fail_first: int = 0) -> None:
        self.events: list[tuple[bytes, str]] = []
        self.fail_first = fail_first
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server API
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if receiver.fail_first > 0:
                    receiver.fail_first -= 1
                    self.send_response(500)
                else:
                    receiver.events.append((body, self.headers[SIGNATURE_HEADER]))
                    self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, count: int, timeout: float = 10) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.events) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return [json.loads(body) for body, _ in self.events]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


def hooked(make_client, url, **kw):
    return make_client(
        webhook_url=url,
        webhook_secret=SECRET,
        webhook_backoff_seconds=0.05,
        webhook_poll_seconds=0.05,
        **kw,
    )


def test_activation_emits_signed_events_with_cause_import(make_client, receiver):
    client = hooked(make_client, receiver.url)
    imp = post_import(client, sample_import("u_1")).json()
    client.post(f"/v1/imports/{imp['id']}/activate", headers=AUTH)
    client.post(
        "/v1/users/u_1/offline-payments",
        json={"amount": 10, "currency": "EUR", "reference": "wire-1"},
        headers=AUTH,
    )
    events = receiver.wait_for(4)
    assert [e["type"] for e in events] == [
        "import.created",
        "import.activated",
        "subscription.created",
        "offline_payment.recorded",
    ]
    for body, header in receiver.events:
        assert verify(SECRET, body, header), header
    for event in events:
        EventOut.model_validate(event)
    created = events[2]
    assert created["cause"] == "import" and created["import_id"] == imp["id"]
    assert created["user_id"] == "u_1" and created["id"].startswith("evt_")
    assert created["data"]["object"]["external_id"] == "sub_u_1"
    assert created["created"].endswith("Z")
    assert events[3]["cause"] == "api" and "import_id" not in events[3]


def test_failed_deliveries_are_retried_in_order_and_recorded(make_client):
    receiver = Receiver(fail_first=2)
    try:
        client = hooked(make_client, receiver.url)
        client.post("/v1/users/n_1/customer", json={"currency": "EUR"}, headers=AUTH)
        client.post(
            "/v1/users/n_1/subscriptions",
            json={"plan_code": "p", "unit_amount": 500, "currency": "EUR", "interval": "month"},
            headers=AUTH,
        )
        events = receiver.wait_for(5)
        assert [e["type"] for e in events] == [
            "customer.created",
            "subscription.created",
            "invoice.created",
            "payment.succeeded",
            "invoice.paid",
        ]
        sessions = client.app.state.service.sessions
        with sessions() as session:
            first = session.scalars(select(m.OutboxEvent).order_by(m.OutboxEvent.id)).first()
        assert first.attempts == 3 and first.delivered_at is not None
        assert first.last_error is None
    finally:
        receiver.server.shutdown()


def test_no_events_are_stored_without_a_webhook_url(client):
    post_import(client, sample_import("u_1"))
    with client.app.state.service.sessions() as session:
        assert session.scalars(select(m.OutboxEvent)).all() == []
