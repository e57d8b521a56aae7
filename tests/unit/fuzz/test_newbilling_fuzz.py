"""Contract fuzzing of the reference new service (issue 11): schemathesis over
docs/contract/newbilling.openapi.json against ``sandbox.newbilling``'s real app (SQLite).

Bounded examples per operation (``FUZZ_EXAMPLES``, default 10: the import payload is
big), valid and invalid data.
For every answer: never a 5xx; every 4xx in the documented error body
(``{"error": {"type", "message", ...}}``); and on any 4xx not one billing row written
(rows of every billing table and of imports, read back after the call). User,
subscription and payment ids in paths are real ones half of the time.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import hypothesis.strategies as st
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from sqlalchemy import func, select

from sandbox.newbilling import models as m
from sandbox.newbilling.app import create_app
from sandbox.newbilling.settings import Settings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

ROOT = Path(__file__).resolve().parents[3]
CONTRACT = ROOT / "docs" / "contract" / "newbilling.openapi.json"
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "10"))
TOKEN = "fuzz-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

schemathesis.experimental.OPEN_API_3_1.enable()  # FastAPI documents OpenAPI 3.1
schema = schemathesis.from_pytest_fixture("newbilling_schema")
pytestmark = [pytest.mark.slow]


class NB:
    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.ids: dict[str, str] = {}

    def rows(self) -> tuple[int, ...]:
        sessions = self.client.app.state.service.sessions  # type: ignore[attr-defined]
        with sessions() as session:
            return tuple(
                session.scalar(select(func.count()).select_from(model)) or 0
                for model in (*m.IMPORTED_TABLES, m.Import)
            )


@pytest.fixture
def nb(tmp_path: Path) -> Iterator[NB]:
    settings_ = Settings(api_tokens=(TOKEN,), database_url=f"sqlite:///{tmp_path}/nb.db")
    with TestClient(create_app(settings_)) as client:
        service = NB(client)
        assert client.post("/v1/users/n_1/customer", json={"currency": "EUR"},
                           headers=AUTH).status_code == 201  # fmt: skip
        sub = client.post(
            "/v1/users/n_1/subscriptions",
            json={"plan_code": "basic", "unit_amount": 1000, "currency": "EUR",
                  "interval": "month"},
            headers=AUTH,
        ).json()  # fmt: skip
        pay = client.get("/v1/users/n_1/payments", headers=AUTH).json()["data"][0]
        service.ids = {"user_id": "n_1", "subscription_id": sub["id"], "payment_id": pay["id"]}
        yield service


@pytest.fixture
def newbilling_schema(nb: NB):  # type: ignore[no-untyped-def]
    loaded = schemathesis.from_dict(
        json.loads(CONTRACT.read_text()),
        app=nb.client.app,
        data_generation_methods=[
            schemathesis.DataGenerationMethod.positive,
            schemathesis.DataGenerationMethod.negative,
        ],
    ).exclude(path_regex="^/_test/")  # the test-only wipe endpoint

    @loaded.hook
    def before_generate_path_parameters(_context, strategy):  # type: ignore[no-untyped-def]
        def real(t):  # type: ignore[no-untyped-def]
            params, use = t
            if not params or not use:
                return params
            return {k: nb.ids.get(k, v) for k, v in params.items()}

        return st.tuples(strategy, st.booleans()).map(real)

    return loaded


def _error_body(response) -> None:  # type: ignore[no-untyped-def]
    if response.status_code < 400:
        return
    body = response.json()
    assert set(body) == {"error"}, f"not the documented error body: {body}"
    assert isinstance(body["error"].get("type"), str), body
    assert isinstance(body["error"].get("message"), str), body


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                           HealthCheck.filter_too_much, HealthCheck.data_too_large],
    derandomize=True,
)  # fmt: skip
def test_newbilling_contract_fuzz(case, nb: NB) -> None:  # type: ignore[no-untyped-def]
    before = nb.rows()
    response = case.call_asgi(headers={**AUTH, **(case.headers or {})})
    case.validate_response(response, checks=(not_a_server_error,))
    _error_body(response)
    if 400 <= response.status_code < 500:
        assert nb.rows() == before, (
            f"{case.method} {case.formatted_path} answered {response.status_code} "
            f"but rows were written: {response.text}"
        )
