"""The Stripe double over real HTTP, for what must reach legacy through a socket.

``StripeDouble`` is the SDK's HTTP-client seam: a ``StripeClient`` built with it never
opens a socket. The throughput bench needs more than that: the fault proxy counts and
rate-limits calls on the wire, and ``twinbill worker`` processes reach legacy at
``TWINBILL_LEGACY_API_BASE`` like production does. ``ServedDouble`` puts the same double
behind a loopback HTTP server (stdlib ``ThreadingHTTPServer``: a few dozen lines, no
framework needed to hand bytes to ``StripeDouble.request``), one request at a time
under a lock because the double's store is plain dicts.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.stripe_current.double import StripeDouble

API_KEY = "sk_test_double"


class ServedDouble:
    """``with ServedDouble(double) as url:`` serves ``double`` at ``url`` until the block ends."""

    def __init__(self, double: StripeDouble) -> None:
        self.double = double
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> str:
        served = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k: v for k, v in self.headers.items()}
                with served._lock:
                    text, status, extra = served.double.request(
                        self.command.lower(), f"http://double{self.path}", headers, body
                    )
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in extra.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = _answer

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass  # the bench counts requests at the proxy; no access log

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        port = self._server.server_address[1]
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
