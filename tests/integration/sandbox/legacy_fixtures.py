"""Fixtures for the legacy sandbox tests (localstripe subprocesses).

Kept out of conftest.py on purpose (another suite owns that file): test modules
import what they need with ``from legacy_fixtures import ...``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import stripe

from sandbox.legacy.launcher import LocalStripe
from sandbox.legacy.population import SeededUser, seed

SEED = 20240611
POPULATION = 26


@pytest.fixture(scope="session")
def legacy_server() -> Iterator[LocalStripe]:
    """One localstripe for the session; use ``legacy`` to get it clean."""
    with LocalStripe() as server:
        yield server


@pytest.fixture
def legacy(legacy_server: LocalStripe) -> Iterator[LocalStripe]:
    """The session's localstripe, emptied before and after the test."""
    legacy_server.reset()
    yield legacy_server
    legacy_server.reset()


@pytest.fixture
def legacy_client(legacy: LocalStripe) -> stripe.StripeClient:
    return legacy.client()


@pytest.fixture(scope="module")
def seeded_population() -> Iterator[tuple[stripe.StripeClient, list[SeededUser]]]:
    """A private localstripe holding the 26-user population of ``SEED``."""
    with LocalStripe() as server:
        client = server.client()
        yield client, seed(client, POPULATION, SEED)
