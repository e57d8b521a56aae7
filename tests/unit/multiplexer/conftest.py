from __future__ import annotations

import pytest

from core import dbschema
from core.db import make_engine, make_sessionmaker


@pytest.fixture
def sessions(tmp_path):
    url = f"sqlite:///{tmp_path / 'mux.db'}"
    dbschema.upgrade(url)
    engine = make_engine(url)
    yield make_sessionmaker(engine)
    engine.dispose()
