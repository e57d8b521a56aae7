"""The CLI's composition root: one ``App`` per command invocation.

Built on first use (``twinbill --help`` and ``db upgrade`` build nothing), kept on
the root click context — so it lives exactly as long as the command — and closed
when the command ends. Outside a click context (a function called from Python),
each call builds a fresh root the caller owns.

Commands that only read the database (``cohort list``, ``cohort status``) take
``database()`` instead: sessions on ``TWINBILL_DATABASE_URL`` alone, so they work
where no billing backend is configured (no legacy API key, no new-billing token).
"""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker
from typer._click.globals import get_current_context  # typer vendors click: not `click`

from admin.bootstrap import App, bootstrap
from core.db import make_engine, make_sessionmaker
from core.settings import load_settings

ROOT, DATABASE = "twinbill.root", "twinbill.database"


def app_root() -> App:
    click_ctx = get_current_context(silent=True)
    if click_ctx is None:
        return bootstrap(load_settings())
    top = click_ctx.find_root()
    meta = top.meta
    root = meta.get(ROOT)
    if root is None:
        root = meta[ROOT] = bootstrap(load_settings())
        top.call_on_close(root.close)
    return root  # type: ignore[no-any-return]


def mux_context() -> App:
    """Kept for the CLI modules that only need the multiplexer's parts."""
    return app_root()


def database() -> sessionmaker[Session]:
    """Sessions on the configured database, nothing else built (the command's root's
    own sessions when it has one). Disposed when the command ends."""
    click_ctx = get_current_context(silent=True)
    top = click_ctx.find_root() if click_ctx is not None else None
    if top is not None and ROOT in top.meta:
        return top.meta[ROOT].sessions  # type: ignore[no-any-return]
    if top is not None and DATABASE in top.meta:
        return top.meta[DATABASE]  # type: ignore[no-any-return]
    engine = make_engine(load_settings().database_url)
    sessions = make_sessionmaker(engine)
    if top is not None:
        top.meta[DATABASE] = sessions
        top.call_on_close(engine.dispose)
    return sessions
