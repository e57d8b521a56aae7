"""Helpers shared by the newbilling unit tests (imported by basename: no __init__.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

if TYPE_CHECKING:
    from starlette.testclient import TestClient

from sandbox.newbilling import models as m

TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def post_import(client: TestClient, payload: dict[str, Any], key: str = "k1", **kw: Any) -> Any:
    return client.post("/v1/imports", json=payload, headers={**AUTH, "Idempotency-Key": key}, **kw)


def row_counts(client: TestClient) -> dict[str, int]:
    """Rows per billing table, to prove that a rejected request wrote nothing."""
    sessions = client.app.state.service.sessions  # type: ignore[attr-defined]
    with sessions() as session:
        return {
            model.__tablename__: session.scalar(select(func.count()).select_from(model)) or 0
            for model in (*m.IMPORTED_TABLES, m.Import, m.IdempotencyKey)
        }
