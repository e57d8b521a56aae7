"""Every difference between the legacy dialects is a field of one frozen value."""

from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path

import pytest

from multiplexer.backends import stripe as package
from multiplexer.backends.stripe.dialect import DIALECTS, Dialect, DialectName


def test_each_dialect_name_has_one_frozen_value():
    assert set(DIALECTS) == set(typing.get_args(DialectName))
    assert all(d.name == name for name, d in DIALECTS.items())
    with pytest.raises(dataclasses.FrozenInstanceError):
        DIALECTS["localstripe"].account_balance_negated = False  # type: ignore[misc]


def test_every_dialect_sets_every_field():
    current, local = DIALECTS["current"], DIALECTS["localstripe"]
    for f in dataclasses.fields(Dialect):
        assert getattr(current, f.name) is not None and getattr(local, f.name) is not None


def test_no_module_of_the_adapter_compares_a_dialect_name():
    """A new quirk is a field of ``Dialect``, not an ``if dialect == ...`` in a reader."""
    compare = re.compile(r"""[!=]=\s*["'](current|localstripe)["']""")
    found = [
        f"{path.name}:{n}: {line.strip()}"
        for path in sorted(Path(package.__file__).parent.glob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if compare.search(line)
    ]
    assert found == []
