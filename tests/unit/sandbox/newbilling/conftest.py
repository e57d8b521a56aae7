"""Fixtures for the newbilling unit tests: the real app on a fresh SQLite file per test."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from nb_helpers import TOKEN

from sandbox.newbilling.app import create_app
from sandbox.newbilling.settings import Settings


@pytest.fixture
def nb_settings(tmp_path: Path) -> Settings:
    return Settings(api_tokens=(TOKEN, "other-token"), database_url=f"sqlite:///{tmp_path}/nb.db")


@pytest.fixture
def make_client(nb_settings: Settings) -> Iterator[Callable[..., TestClient]]:
    """Build a client with tweaked settings; every client is closed (lifespan stopped) after."""
    opened: list[TestClient] = []

    def build(**changes: Any) -> TestClient:
        client = TestClient(create_app(nb_settings.with_overrides(**changes)))
        client.__enter__()
        opened.append(client)
        return client

    yield build
    for client in opened:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()
