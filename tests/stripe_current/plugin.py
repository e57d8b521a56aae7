"""The ``stripe_conformance`` fixture (autouse, registered in tests/conftest.py).

Every request the legacy backend sends, in any test, whichever server answers it
(localstripe, the in-process double), is decoded at the SDK's transport and checked
against the stripe SDK's params TypedDict for its route (``conformance.violations``).
A test whose backend sent a non-conforming request fails at teardown, listing them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from stripe._http_client import HTTPClient

from multiplexer.backends.stripe_transport import StripeCalls
from tests.stripe_current import conformance

SEEN: list[tuple[str, str, str]] = []  # (dialect, method, path) of every checked request


@pytest.fixture(autouse=True)
def stripe_conformance(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    found: list[str] = []
    send = HTTPClient.request_with_retries
    call = StripeCalls.call

    def checked_send(
        self: HTTPClient,
        method: str,
        url: str,
        headers: Any,
        post_data: Any = None,
        *a: Any,
        **kw: Any,
    ) -> Any:
        dialect = conformance.SENDING.get()
        if dialect is not None:
            body = post_data.decode() if isinstance(post_data, bytes) else post_data
            found.extend(conformance.violations(method, url, body, dialect))
            SEEN.append((dialect, method.upper(), url.split("?")[0]))
        return send(self, method, url, headers, post_data, *a, **kw)

    def marked_call(self: StripeCalls, *args: Any, **kwargs: Any) -> Any:
        token = conformance.SENDING.set(self.dialect)
        try:
            return call(self, *args, **kwargs)
        finally:
            conformance.SENDING.reset(token)

    monkeypatch.setattr(HTTPClient, "request_with_retries", checked_send)
    monkeypatch.setattr(StripeCalls, "call", marked_call)
    yield found
    if found:
        pytest.fail(
            "the legacy backend sent requests the stripe SDK's params types refuse:\n  "
            + "\n  ".join(dict.fromkeys(found)),
            pytrace=False,
        )
