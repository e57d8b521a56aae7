"""Build the runtime context for CLI commands (settings from the environment)."""

from __future__ import annotations

from multiplexer.bootstrap import MuxContext


def mux_context() -> MuxContext:
    """The process's one context (shared with migration services the command may call)."""
    from migration import runtime

    return runtime.context()
