"""Security headers on every response, and the client address behind trusted proxies only.

Headers (``SecurityHeaders``, a pure ASGI middleware so streamed CSV answers get
them too): a strict Content-Security-Policy (scripts, styles, images and forms
from this origin only, no inline script, ``frame-ancestors 'none'``),
``X-Frame-Options: DENY`` for old browsers, ``Referrer-Policy: same-origin``,
``X-Content-Type-Options: nosniff``, and ``Strict-Transport-Security`` when the
request came over TLS (directly or, from a trusted proxy, ``X-Forwarded-Proto``).

``client_ip``: ``X-Forwarded-For`` is read only when the peer that connected is
in ``TWINBILL_TRUSTED_PROXIES`` (comma-separated addresses or CIDRs; empty by
default, so nobody's header is believed). The chain is walked from the right and
the first address that is not a trusted proxy is the client. ``twinbill serve``
runs uvicorn with ``proxy_headers=False`` so uvicorn does not rewrite the peer
from the header before this code sees it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.errors import ConfigurationError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

CSP = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
HSTS = "max-age=31536000; includeSubDomains"
HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"x-content-type-options", b"nosniff"),
)


@lru_cache(maxsize=16)
def parse_proxies(text: str | None) -> tuple[Network, ...]:
    """``"10.0.0.0/8, 127.0.0.1"`` -> networks; a bad entry is a configuration error."""
    out: list[Network] = []
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        try:
            out.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ConfigurationError(
                f"TWINBILL_TRUSTED_PROXIES: {part!r} is not an IP address or CIDR"
            ) from None
    return tuple(out)


def _trusted(address: str, proxies: Iterable[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in net for net in proxies)


def forwarded_client(peer: str, forwarded_for: str | None, proxies: tuple[Network, ...]) -> str:
    """The client address: the peer, unless a trusted proxy forwarded for someone else."""
    if not proxies or not forwarded_for or not _trusted(peer, proxies):
        return peer
    client = peer
    for hop in reversed([h.strip() for h in forwarded_for.split(",")]):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            break  # a garbled hop: keep the last address a trusted proxy vouched for
        client = hop
        if not _trusted(hop, proxies):
            break
    return client


def _proxies(request: Request) -> tuple[Network, ...]:
    settings = request.app.state.mux.settings
    return parse_proxies(getattr(settings, "trusted_proxies", "") or "")


def client_ip(request: Request) -> str:
    peer = request.client.host if request.client else "unknown"
    return forwarded_client(peer, request.headers.get("x-forwarded-for"), _proxies(request))


def is_tls(request: Request) -> bool:
    if request.url.scheme == "https":
        return True
    peer = request.client.host if request.client else ""
    proto = request.headers.get("x-forwarded-proto", "")
    return proto.lower() == "https" and _trusted(peer, _proxies(request))


class SecurityHeaders:
    """Adds the security headers to every HTTP response (HSTS only over TLS)."""

    def __init__(self, app: ASGIApp, trusted_proxies: str | None = None) -> None:
        self.app = app
        self.proxies = parse_proxies(trusted_proxies or "")

    def _tls(self, scope: Scope) -> bool:
        if scope.get("scheme") == "https":
            return True
        peer = (scope.get("client") or ("", 0))[0]
        headers = dict(scope.get("headers") or [])
        proto = headers.get(b"x-forwarded-proto", b"").decode("latin-1").lower()
        return proto == "https" and _trusted(peer, self.proxies)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = list(HEADERS)
        if self._tls(scope):
            extra.append((b"strict-transport-security", HSTS.encode()))

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers: list[Any] = list(message.get("headers") or [])
                present = {k.lower() for k, _ in headers}
                headers.extend((k, v) for k, v in extra if k not in present)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)
