"""Build the runtime context for CLI commands (settings from the environment)."""

from __future__ import annotations

from core.settings import get_settings
from multiplexer.bootstrap import MuxContext, build


def mux_context() -> MuxContext:
    return build(get_settings())
