"""The newbilling HTTP contract against a real uvicorn subprocess, on SQLite and PostgreSQL.

One server per backend per module (starting one per test would dominate the run
time); every test starts from ``DELETE /_test/data``, like localstripe's
``/_config/data``. PostgreSQL gets its own scratch database for the module, made
the same way as the shared ``postgres_url`` fixture (which is per-test, too short-
lived for a module-scoped server).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from sandbox.newbilling.samples import sample_import
from sandbox.newbilling.webhooks import SIGNATURE_HEADER, verify

ROOT = Path(__file__).resolve().parents[3]
TOKEN, SECRET = "contract-token", "whsec_contract"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Receiver:
    """Webhook endpoint recording (raw body, signature header)."""

    def __init__(self) -> None:
        self.events: list[tuple[bytes, str]] = []
        events = self.events

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                events.append((body, self.headers[SIGNATURE_HEADER]))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, predicate, timeout: float = 10.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            events = [json.loads(body) for body, _ in list(self.events)]
            if predicate(events):
                return events
            time.sleep(0.05)
        raise AssertionError(f"webhooks never matched; got {[e['type'] for e in events]}")


def start_server(database_url: str, port: int, **env: str) -> subprocess.Popen[bytes]:
    environ = {**os.environ, "NEWBILLING_API_TOKENS": TOKEN, **env}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sandbox.newbilling",
            "serve",
            "--port",
            str(port),
            "--database-url",
            database_url,
        ],
        cwd=ROOT,
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"newbilling exited: {proc.stderr.read().decode()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("newbilling did not become healthy in 20s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


@pytest.fixture(scope="module")
def database_url(request, tmp_path_factory) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('nb')}/newbilling.db"
        return
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    admin_url = request.getfixturevalue("postgres_admin_url")
    name = f"twinbill_test_nb_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


BACKENDS = [
    pytest.param("sqlite", marks=pytest.mark.newbilling, id="sqlite"),
    pytest.param("postgres", marks=[pytest.mark.newbilling, pytest.mark.postgres], id="postgres"),
]


@pytest.fixture(scope="module")
def server(database_url: str, receiver: Receiver) -> Iterator[str]:
    port = free_port()
    proc = start_server(
        database_url, port, NEWBILLING_WEBHOOK_URL=receiver.url, NEWBILLING_WEBHOOK_SECRET=SECRET
    )
    yield f"http://127.0.0.1:{port}"
    stop(proc)


@pytest.fixture
def api(server: str, receiver: Receiver) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=server, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
    ) as client:
        assert client.delete("/_test/data").status_code == 200
        receiver.events.clear()
        yield client


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "api" in metafunc.fixturenames:
        metafunc.parametrize("database_url", BACKENDS, indirect=True, scope="module")


def imp(api: httpx.Client, payload: dict, key: str | None = "k1") -> httpx.Response:
    headers = {"Idempotency-Key": key} if key else {}
    return api.post("/v1/imports", json=payload, headers=headers)


def test_import_activate_bundle_and_signed_webhooks(api, receiver):
    payload = sample_import("u_1", n_invoices=3)
    created = imp(api, payload)
    assert created.status_code == 201, created.text
    bundle = api.get("/v1/users/u_1/bundle").json()
    assert bundle["import"] == {"id": created.json()["id"], "status": "pending"}
    assert [i["external_id"] for i in bundle["invoices"]] == ["in_u_1_0", "in_u_1_1", "in_u_1_2"]
    assert [p["amount"] for p in bundle["payments"]] == [1999, 1999, 1999]
    assert bundle["customer"]["balance"] == -250
    assert bundle["discounts"][0]["percent_off_bp"] == 1250

    activated = api.post(f"/v1/imports/{created.json()['id']}/activate")
    assert activated.status_code == 200
    [sub] = activated.json()["subscriptions"]
    assert sub["next_renewal_at"] == payload["subscriptions"][0]["current_period_end"]

    events = receiver.wait_for(lambda ev: any(e["type"] == "subscription.created" for e in ev))
    for body, header in receiver.events:
        assert verify(SECRET, body, header)
    created_evt = next(e for e in events if e["type"] == "subscription.created")
    assert created_evt["cause"] == "import"
    assert created_evt["import_id"] == created.json()["id"]


def test_idempotent_replay_and_key_reuse(api):
    first = imp(api, sample_import("u_1"), key="same")
    again = imp(api, sample_import("u_1"), key="same")
    assert (again.status_code, again.json()) == (first.status_code, first.json())
    reused = imp(api, sample_import("u_2"), key="same")
    assert reused.status_code == 409
    assert reused.json()["error"]["type"] == "idempotency_key_reused"
    assert api.get("/v1/users/u_2/bundle").status_code == 404


def _bad(mutation):
    payload = sample_import("u_bad")
    mutation(payload)
    return payload


INVALID = {
    "unknown currency": lambda p: p["customer"].update(currency="ZZZ"),
    "currency mismatch": lambda p: p["payments"][0].update(currency="USD"),
    "negative amount": lambda p: p["invoices"][0]["lines"][0].update(amount=-1),
    "lines not adding up": lambda p: p["invoices"][0].update(subtotal=1),
    "payment exceeding invoice": lambda p: p["payments"].append(
        dict(p["payments"][0], external_id="ch_more")
    ),
    "refund exceeding payment": lambda p: p["refunds"][0].update(amount=10**6),
    "duplicate external ids": lambda p: p["invoices"][1].update(external_id="in_u_bad_0"),
}


@pytest.mark.parametrize("case", list(INVALID))
def test_invalid_imports_write_nothing(api, case):
    response = imp(api, _bad(INVALID[case]))
    assert response.status_code == 422, response.text
    assert response.json()["error"]["fields"]
    assert api.get("/v1/users/u_bad/bundle").status_code == 404
    export = api.get("/v1/export").text
    assert export == ""


def test_protocol_errors(api, server):
    malformed = api.post(
        "/v1/imports",
        content=b"{oops",
        headers={"Idempotency-Key": "m", "Content-Type": "application/json"},
    )
    assert malformed.status_code == 422 and malformed.json()["error"]["type"] == "malformed_json"
    anonymous = httpx.post(
        f"{server}/v1/imports", json=sample_import("u_1"), headers={"Idempotency-Key": "a"}
    )
    assert anonymous.status_code == 401
    assert imp(api, sample_import("u_1"), key=None).status_code == 400
    huge = sample_import("u_1")
    huge["customer"]["name"] = "x" * 1_100_000
    too_big = imp(api, huge)
    assert too_big.status_code == 413
    assert api.get("/v1/users/u_1/bundle").status_code == 404


def test_discard_reimport_and_state_conflicts(api):
    first = imp(api, sample_import("u_1"), key="a").json()
    assert imp(api, sample_import("u_1"), key="b").json()["error"]["type"] == (
        "user_already_imported"
    )
    assert api.delete(f"/v1/imports/{first['id']}").json()["status"] == "discarded"
    assert api.get("/v1/users/u_1/bundle").status_code == 404
    assert api.post(f"/v1/imports/{first['id']}/activate").status_code == 409
    second = imp(api, sample_import("u_1"), key="c")
    assert second.status_code == 201
    api.post(f"/v1/imports/{second.json()['id']}/activate")
    discard = api.delete(f"/v1/imports/{second.json()['id']}")
    assert discard.status_code == 409 and discard.json()["error"]["type"] == "import_active"


def test_native_operations_and_offline_payment_rules(api):
    assert api.post("/v1/users/n_1/customer", json={"currency": "EUR"}).status_code == 201
    sub = api.post(
        "/v1/users/n_1/subscriptions",
        json={"plan_code": "basic", "unit_amount": 1200, "currency": "EUR", "interval": "month"},
    ).json()
    change = api.post(
        f"/v1/subscriptions/{sub['id']}/change-plan",
        json={
            "plan_code": "pro",
            "unit_amount": 2400,
            "currency": "EUR",
            "interval": "month",
            "proration_date": sub["current_period_start"],
        },
    )
    assert [li["amount"] for li in change.json()["invoice"]["lines"]] == [-1200, 2400]
    body = {"amount": 700, "currency": "EUR", "reference": "SEPA-9"}
    first = api.post("/v1/users/n_1/offline-payments", json=body, headers={"Idempotency-Key": "o"})
    assert first.status_code == 201
    replay = api.post("/v1/users/n_1/offline-payments", json=body, headers={"Idempotency-Key": "o"})
    assert (replay.status_code, replay.json()) == (201, first.json())
    by_ref = api.post("/v1/users/n_1/offline-payments", json=body)
    assert (by_ref.status_code, by_ref.json()["id"]) == (200, first.json()["id"])
    mismatch = api.post("/v1/users/n_1/offline-payments", json={**body, "currency": "GBP"})
    assert mismatch.status_code == 422
    assert mismatch.json()["error"]["type"] == "currency_mismatch"
    payments = api.get("/v1/users/n_1/payments").json()["data"]
    assert sorted(p["amount"] for p in payments) == [700, 1200, 1200]


@pytest.mark.parametrize(("currency", "amount"), [("JPY", 98765), ("BHD", 1234567)])
def test_minor_units_round_trip_exactly(api, currency, amount):
    assert imp(api, sample_import("u_1", currency=currency, amount=amount)).status_code == 201
    bundle = api.get("/v1/users/u_1/bundle").json()
    assert {i["total"] for i in bundle["invoices"]} == {amount}
    assert {p["currency"] for p in bundle["payments"]} == {currency}


def test_export_streams_ndjson(api):
    for n in range(3):
        imp(api, sample_import(f"u_{n}"), key=f"k{n}")
    with api.stream("GET", "/v1/export") as response:
        assert response.headers["content-type"].startswith("application/x-ndjson")
        users = [json.loads(line)["user_id"] for line in response.iter_lines() if line]
    assert users == ["u_0", "u_1", "u_2"]


@pytest.mark.newbilling
def test_rate_limit_over_http(tmp_path):
    port = free_port()
    proc = start_server(f"sqlite:///{tmp_path}/rl.db", port, NEWBILLING_RATE_LIMIT="3")
    try:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers) as client:
            codes = [client.get("/v1/users/x/bundle") for _ in range(6)]
        limited = [r for r in codes if r.status_code == 429]
        assert limited and int(limited[0].headers["Retry-After"]) >= 1
    finally:
        stop(proc)


@pytest.mark.newbilling
def test_refuses_to_start_without_tokens():
    env = {k: v for k, v in os.environ.items() if k != "NEWBILLING_API_TOKENS"}
    result = subprocess.run(
        [sys.executable, "-m", "sandbox.newbilling", "serve"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=30,
    )
    assert result.returncode != 0
    assert b"NEWBILLING_API_TOKENS" in result.stderr


def test_concurrent_imports_of_one_user_land_once(api, server):
    from concurrent.futures import ThreadPoolExecutor

    payload = sample_import("u_race")

    def post(key: str) -> httpx.Response:
        return httpx.post(
            f"{server}/v1/imports",
            json=payload,
            timeout=30,
            headers={"Authorization": f"Bearer {TOKEN}", "Idempotency-Key": key},
        )

    with ThreadPoolExecutor(8) as pool:
        same_key = list(pool.map(post, ["same"] * 8))
    assert {r.status_code for r in same_key} == {201}
    assert len({r.json()["id"] for r in same_key}) == 1

    api.delete(f"/v1/imports/{same_key[0].json()['id']}")
    with ThreadPoolExecutor(8) as pool:
        many_keys = list(pool.map(post, [f"k{i}" for i in range(8)]))
    codes = sorted(r.status_code for r in many_keys)
    assert codes == [201] + [409] * 7, [r.text for r in many_keys]
    assert api.get("/v1/users/u_race/bundle").json()["import"]["status"] == "pending"
