"""The CLI's composition root: one ``App`` per command invocation.

Built on first use (``twinbill --help`` and ``db upgrade`` build nothing), kept on
the root click context — so it lives exactly as long as the command — and closed
when the command ends. Outside a click context (a function called from Python),
each call builds a fresh root the caller owns.
"""

from __future__ import annotations

from typer._click.globals import get_current_context  # typer vendors click: not `click`

from admin.bootstrap import App, bootstrap
from core.settings import load_settings


def app_root() -> App:
    click_ctx = get_current_context(silent=True)
    if click_ctx is None:
        return bootstrap(load_settings())
    top = click_ctx.find_root()
    meta = top.meta
    root = meta.get("twinbill.root")
    if root is None:
        root = meta["twinbill.root"] = bootstrap(load_settings())
        top.call_on_close(root.close)
    return root  # type: ignore[no-any-return]


def mux_context() -> App:
    """Kept for the CLI modules that only need the multiplexer's parts."""
    return app_root()
