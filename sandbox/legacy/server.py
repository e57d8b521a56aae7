"""localstripe, bound to loopback, with per-instance state (or none).

Upstream localstripe (1.15) binds ``::`` (every interface) and pickles its *whole*
store to ``/tmp/localstripe.pickle`` on every single store write. That makes
writes O(population) and lets two instances on one machine overwrite each
other's state. This wrapper keeps localstripe's aiohttp app and resources as
they are and only replaces the two ``Store`` persistence methods:

- no ``--state-file``: nothing is ever written to disk (tests, benchmarks);
- ``--state-file PATH``: the store is loaded from PATH at start-up (if it
  exists), written at most once per ``--flush-interval`` seconds after a
  change (atomically, via a temporary file and ``os.replace``), and once more
  on shutdown (SIGTERM / SIGINT).

It also adds ``GET /_config/health`` (no auth, like every ``/_config/`` route)
so the launcher can tell *this* server from whatever else sits on the port.

Run: ``python -m sandbox.legacy.server --host 127.0.0.1 --port N [--state-file PATH]``
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import pickle
import sys
from pathlib import Path
from typing import Any

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})

log = logging.getLogger("sandbox.legacy.server")


class StatePersistence:
    """Replacement for localstripe's ``Store.dump_to_disk`` / ``try_load_from_disk``.

    ``mark_dirty`` is called on every store write (localstripe calls
    ``dump_to_disk`` from ``__setitem__``), so it must stay O(1): it only
    schedules one delayed flush on the running loop.
    """

    def __init__(self, store: dict[str, Any], path: Path | None, flush_interval: float) -> None:
        self.store = store
        self.path = path
        self.flush_interval = flush_interval
        self._handle: asyncio.TimerHandle | None = None
        self.dirty = False

    def load(self) -> None:
        if self.path is None or not self.path.exists():
            return
        # The state file is our own, written by flush() below: trusted input.
        with self.path.open("rb") as fh:
            old = pickle.load(fh)  # noqa: S301
        dict.clear(self.store)
        dict.update(self.store, old)
        log.info("loaded %d objects from %s", len(old), self.path)

    def mark_dirty(self) -> None:
        if self.path is None:
            return
        self.dirty = True
        if self._handle is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # a write outside the loop (start-up): flush now
            self.flush()
            return
        self._handle = loop.call_later(self.flush_interval, self.flush)

    def flush(self) -> None:
        self._handle = None
        if self.path is None or not self.dirty:
            return
        tmp = self.path.with_name(self.path.name + f".{os.getpid()}.tmp")
        with tmp.open("wb") as fh:
            pickle.dump(dict(self.store), fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, self.path)
        self.dirty = False


def build_app(state_file: Path | None, flush_interval: float = 1.0) -> Any:
    """Patch localstripe's persistence and return its aiohttp application."""
    from aiohttp import web
    from localstripe import resources
    from localstripe import server as ls_server

    persistence = StatePersistence(resources.store, state_file, flush_interval)
    # Patch the class, not the instance: localstripe's own middleware calls
    # ``store.dump_to_disk()`` after every POST/PUT/DELETE as well.
    resources.Store.dump_to_disk = lambda self: persistence.mark_dirty()  # type: ignore[method-assign]
    resources.Store.try_load_from_disk = lambda self: persistence.load()  # type: ignore[method-assign]

    persistence.load()
    app = ls_server.app

    async def health(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "ok": True,
                "pid": os.getpid(),
                "objects": len(resources.store),
                "state_file": str(state_file) if state_file else None,
            }
        )

    async def on_cleanup(app: web.Application) -> None:
        persistence.flush()

    app.router.add_get("/_config/health", health)
    app.on_cleanup.append(on_cleanup)
    return app


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state-file", type=Path, default=None)
    parser.add_argument("--flush-interval", type=float, default=1.0)
    parser.add_argument("--access-log", action="store_true", help="log every request")
    parser.add_argument(
        "--allow-non-loopback",
        action="store_true",
        help="allow --host to be something other than a loopback address",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.host not in LOOPBACK_HOSTS and not args.allow_non_loopback:
        print(f"refusing to bind {args.host!r}: not a loopback address", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from aiohttp import web

    app = build_app(args.state_file, args.flush_interval)
    access_log = logging.getLogger("aiohttp.access") if args.access_log else None
    web.run_app(
        app,
        host=args.host,
        port=args.port,
        access_log=access_log,
        print=lambda msg: log.info("%s", msg),
        handle_signals=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
