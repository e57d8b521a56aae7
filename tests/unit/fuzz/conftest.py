"""The fuzz tests run over the gateway fixture of the gateway unit tests."""

from tests.unit.multiplexer.test_gateway_unit import gw  # noqa: F401 - the `gw` fixture
