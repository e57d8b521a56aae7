"""A MuxContext on a temporary SQLite database upgraded by Alembic, mounted on a FastAPI app."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker
from webhook_helpers import APP_SECRET, APP_URL, LEGACY_SECRET, NEW_SECRET

from core import dbschema
from core.db import make_engine, make_sessionmaker
from core.settings import Settings, load_settings
from multiplexer.bootstrap import MuxContext
from multiplexer.cache import LocalRouteCache
from multiplexer.facade import BillingMux
from multiplexer.webhooks.router import build_router


@pytest.fixture
def settings(tmp_path: Any) -> Settings:
    url = f"sqlite:///{tmp_path / 'twinbill.db'}"
    dbschema.upgrade(url)
    return load_settings(
        database_url=url,
        legacy_webhook_secret=LEGACY_SECRET,
        new_webhook_secret=NEW_SECRET,
        app_webhook_url=APP_URL,
        app_webhook_secret=APP_SECRET,
        redis_url=None,
    )


@pytest.fixture
def enqueued() -> list[str]:
    return []


@pytest.fixture
def ctx(settings: Settings, enqueued: list[str]) -> Iterator[MuxContext]:
    engine = make_engine(settings.database_url)
    sessions, cache = make_sessionmaker(engine), LocalRouteCache()
    context = MuxContext(
        settings=settings,
        engine=engine,
        sessions=sessions,
        cache=cache,
        limiters={},
        backends={},
        mux=BillingMux(sessions, cache, {}, max_amount_major=settings.max_amount_major),
        enqueue_webhook=lambda user_id, countdown: enqueued.append(user_id),
    )
    yield context
    engine.dispose()


@pytest.fixture
def sessions(ctx: MuxContext) -> sessionmaker[Session]:
    return ctx.sessions


@pytest.fixture
def client(ctx: MuxContext) -> Iterator[TestClient]:
    app = FastAPI()
    app.include_router(build_router())
    app.state.mux = ctx
    with TestClient(app) as test_client:
        yield test_client
