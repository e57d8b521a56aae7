"""Request conformance: every request the legacy backend sends, checked against the SDK.

The stripe SDK's services name, for each route, the generated params TypedDict
(``InvoicePayParams`` for ``POST /v1/invoices/{invoice}/pay``). The route table
here is read from the SDK's own source (``ast``, no hand-written list); a request
is decoded back from the wire (form body or query string) and checked against its
TypedDict: an unknown parameter, a value outside a declared enum (``Literal``), a
missing required key, or a malformed int/bool is a violation. A route the SDK does
not know is a violation too.

The localstripe dialect's deliberate deviations (the older Plans API) are the short
``LOCALSTRIPE_ALLOWED`` list; the current dialect gets no exceptions.

Hooked at the transport level (``stripe._http_client.HTTPClient.request_with_retries``)
by the ``stripe_conformance`` fixture in tests/conftest.py; only requests made inside
``StripeCalls.call`` (the legacy backend) are checked, not test set-up or sandbox
seeding.
"""

from __future__ import annotations

import ast
import builtins
import contextvars
import re
import sys
import threading
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import stripe
import stripe.params
import typing_extensions

#: (route, parameter path) the localstripe dialect sends on purpose, against the SDK's types
#: (docs/legacy-gaps.md: localstripe answers 500 to proration_behavior on update). Its
#: other older parameters (``items[].plan``, ``prorate`` on cancel) are still typed by
#: the SDK and conform as they are.
LOCALSTRIPE_ALLOWED: frozenset[tuple[str, str]] = frozenset(
    {("POST /v1/subscriptions/{subscription_exposed_id}", "prorate")}
)

#: routes the localstripe dialect may call although the pinned SDK has no such route
LOCALSTRIPE_ROUTES: dict[str, str] = {
    "GET /v1/invoices/upcoming": "removed from the current API (create_preview replaced it); "
    "the localstripe dialect previews with it (docs/legacy-gaps.md)",
}

#: which dialect is sending right now (set around StripeCalls.call by the fixture)
SENDING: contextvars.ContextVar[str | None] = contextvars.ContextVar("sending", default=None)


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    template: str
    params: str | None  # name of the TypedDict in stripe.params
    pattern: re.Pattern[str]

    @property
    def name(self) -> str:
        return f"{self.method.upper()} {self.template}"


_ROUTES_LOCK = threading.Lock()


def routes() -> tuple[Route, ...]:
    """Every (method, path) the SDK's v1 services can send, with its params TypedDict.

    Built once, under a lock: the bulk read's list threads reach it at the same moment,
    and CPython 3.11's ``ast.parse`` in two threads at once fails ("AST constructor
    recursion depth mismatch")."""
    with _ROUTES_LOCK:
        return _routes()


@cache
def _routes() -> tuple[Route, ...]:
    found: dict[tuple[str, str], Route] = {}
    for path in sorted(Path(stripe.__file__).parent.glob("_*_service.py")):
        tree = ast.parse(path.read_text())
        for fn in ast.walk(tree):
            if not isinstance(fn, ast.FunctionDef):
                continue
            params = None
            for arg in fn.args.args + fn.args.posonlyargs:
                if arg.arg == "params" and arg.annotation is not None:
                    ann = ast.unparse(arg.annotation)
                    m = re.search(r"(\w+Params)", ann)
                    params = m.group(1) if m else None
            for call in ast.walk(fn):
                if not (
                    isinstance(call, ast.Call)
                    and isinstance(call.func, ast.Attribute)
                    and call.func.attr == "_request"
                    and len(call.args) >= 2
                ):
                    continue
                method, tmpl = call.args[0], call.args[1]
                if isinstance(tmpl, ast.Call) and isinstance(tmpl.func, ast.Attribute):
                    tmpl = tmpl.func.value  # "/v1/x/{id}".format(...)
                if not (isinstance(method, ast.Constant) and isinstance(tmpl, ast.Constant)):
                    continue
                template = str(tmpl.value)
                if not template.startswith("/v1/"):
                    continue
                regex = re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(template))
                key = (str(method.value), template)
                found.setdefault(key, Route(key[0], template, params, re.compile(f"^{regex}$")))
    # literal paths before templated ones (/v1/invoices/create_preview before /v1/invoices/{id})
    return tuple(sorted(found.values(), key=lambda r: (r.template.count("{"), -len(r.template))))


def match(method: str, path: str) -> Route | None:
    for route in routes():
        if route.method == method.lower() and route.pattern.match(path):
            return route
    return None


# --- decoding the wire -------------------------------------------------------------------


def decode(query: str) -> dict[str, Any]:
    """``items[0][price]=p&expand[0]=x`` -> ``{"items": [{"price": "p"}], "expand": ["x"]}``."""
    root: dict[str, Any] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        parts = key.replace("]", "").split("[")
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return _lists(root)


def _lists(value: Any) -> Any:
    if isinstance(value, dict):
        if value and all(k.isdigit() for k in value):
            return [_lists(value[k]) for k in sorted(value, key=int)]
        return {k: _lists(v) for k, v in value.items()}
    return value


# --- checking against the TypedDict -------------------------------------------------------


def _is_typeddict(tp: Any) -> bool:
    return isinstance(tp, type) and hasattr(tp, "__required_keys__")


class _Anything:
    def __class_getitem__(cls, item: Any) -> Any:
        return Any


class _Lenient(dict):  # type: ignore[type-arg]
    """Names only imported under TYPE_CHECKING in the SDK resolve to Any."""

    def __missing__(self, key: str) -> Any:
        for ns in (builtins, stripe.params, stripe, typing_extensions, typing):
            if hasattr(ns, key):
                return getattr(ns, key)
        return _Anything


@cache
def _hints(td: type) -> dict[str, Any]:
    module = vars(sys.modules[td.__module__])
    return typing.get_type_hints(td, localns=_Lenient(module))


def check(value: Any, tp: Any, path: str) -> Iterator[str]:
    """Violations of ``value`` (decoded strings) against type ``tp``, as messages."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any or tp is object or tp is _Anything:
        return
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        literals = {
            a
            for arg in args
            if typing.get_origin(arg) in (typing.Literal, typing_extensions.Literal)
            for a in typing.get_args(arg)
        }
        if str in args and literals - {""}:
            if not isinstance(value, str) or value not in {str(v) for v in literals}:
                yield f"{path}: {value!r} is not one of {sorted(map(str, literals))}"
            return
        results = [list(check(value, arg, path)) for arg in args]
        if all(results):
            yield min(results, key=len)[0]
        return
    if origin in (typing.Literal, typing_extensions.Literal):
        if not isinstance(value, str):
            yield f"{path}: expected one of {list(args)}, got {value!r}"
            return
        allowed = {str(a).lower() if isinstance(a, bool) else str(a) for a in args}
        if value not in allowed:
            yield f"{path}: {value!r} is not one of {sorted(allowed)}"
        return
    if origin in (list, typing.List):  # noqa: UP006
        if not isinstance(value, list):
            yield f"{path}: expected a list, got {value!r}"
            return
        for i, v in enumerate(value):
            yield from check(v, args[0] if args else Any, f"{path}[{i}]")
        return
    if origin in (dict, typing.Dict) or tp in (dict,):  # noqa: UP006
        if not isinstance(value, dict) and value != "":
            yield f"{path}: expected a hash, got {value!r}"
        return
    if _is_typeddict(tp):
        if not isinstance(value, dict):
            if value == "":  # "" unsets an optional hash
                return
            yield f"{path}: expected a hash, got {value!r}"
            return
        hints = _hints(tp)
        for key, v in value.items():
            sub = f"{path}.{key}" if path else key
            if key not in hints:
                yield f"{sub}: unknown parameter"
                continue
            yield from check(v, hints[key], sub)
        for key in sorted(tp.__required_keys__ - set(value)):
            yield f"{path + '.' if path else ''}{key}: required parameter is missing"
        return
    if tp is bool:
        if value not in ("true", "false"):
            yield f"{path}: {value!r} is not a boolean"
    elif tp is int:
        if not re.fullmatch(r"-?\d+", str(value)):
            yield f"{path}: {value!r} is not an integer"
    elif tp in (float, Decimal):
        try:
            Decimal(str(value))
        except InvalidOperation:
            yield f"{path}: {value!r} is not a number"
    elif tp is str and not isinstance(value, str):
        yield f"{path}: expected a string, got {value!r}"
    elif typing.get_origin(tp) is not None or isinstance(tp, type):
        pass  # other SDK types (UntypedStripeObject, ...) accept anything the SDK encodes


_NOT_PARAMS = {
    "api_key",
    "stripe_account",
    "stripe_context",
    "stripe_version",
    "idempotency_key",
    "headers",
    "api_mode",
    "api_base",
    "max_network_retries",
    "content_type",
}


def violations(method: str, url: str, body: str | None, dialect: str) -> list[str]:
    """What is wrong with one request, for ``dialect`` (``current`` or ``localstripe``)."""
    parts = urlsplit(url)
    if dialect == "localstripe" and f"{method.upper()} {parts.path}" in LOCALSTRIPE_ROUTES:
        return []
    route = match(method, parts.path)
    if route is None:
        return [f"{method.upper()} {parts.path}: no such route in stripe-python"]
    params = decode(body if method.lower() == "post" else parts.query)
    if route.params is None:
        return [f"{route.name}: {k}: the route takes no parameters" for k in params]
    td = getattr(stripe.params, route.params)
    out = []
    for msg in check(params, td, ""):
        name = re.sub(r"\[\d+\]", "[]", msg.split(":", 1)[0])
        if name.split(".")[0] in _NOT_PARAMS:
            continue
        if dialect == "localstripe" and (route.name, name) in LOCALSTRIPE_ALLOWED:
            continue
        out.append(f"{route.name}: {msg}")
    return out
