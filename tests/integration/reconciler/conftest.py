"""One migrated world for every reconciler integration test (built once, ~35 s)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from reconcile_world import World, build_world

from sandbox.stack import Stack


@pytest.fixture(scope="session")
def reconcile_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    workdir: Path = tmp_path_factory.mktemp("reconcile-world")
    stack = Stack(workdir / "sandbox")
    world = build_world(workdir, stack)
    try:
        yield world
    finally:
        world.ctx.close()
        stack.__exit__(None, None, None)
