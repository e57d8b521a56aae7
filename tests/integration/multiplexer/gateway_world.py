"""Helpers for the gateway integration tests: a served twinbill, raw reads of both services.

* ``serve(app)`` runs an ASGI app under a real uvicorn on a free loopback port;
* ``app_from_env()`` is the uvicorn factory of the separate server processes
  (``uvicorn --factory gateway_world:app_from_env``): everything from ``TWINBILL_*``;
* ``LegacyRaw`` / ``NewRaw`` read a user's state through each service's *own* API
  (stripe SDK against localstripe, plain HTTP against newbilling), never through
  twinbill's adapters, so "nothing was written" is checked independently;
* ``shape`` turns a JSON value into its shape (keys recursively, value types);
* ``gateway_openapi()`` is the ``/api/v1`` part of the app's OpenAPI document, the
  one kept in ``docs/contract/gateway.openapi.json`` (see docs/contract/README.md).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[3]
HERE = Path(__file__).resolve().parent
CONTRACT = ROOT / "docs" / "contract" / "gateway.openapi.json"
SECRET_KEY = "gateway-it-secret-key-0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], Any], timeout: float = 20.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """``app`` under a real uvicorn (in a thread of this process); yields its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, what="uvicorn")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def app_from_env() -> Any:
    """The uvicorn factory of a separate twinbill server process."""
    from admin.app import create_app
    from admin.bootstrap import bootstrap
    from core.settings import load_settings

    return create_app(bootstrap(load_settings()))


@contextmanager
def server_process(env: dict[str, str], log: Path) -> Iterator[str]:
    """A separate OS process serving ``create_app`` (built from ``env``) under uvicorn."""
    port = free_port()
    full_env = {
        **os.environ,
        **env,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(HERE)]),
    }
    cmd = [
        sys.executable, "-m", "uvicorn", "--factory", "gateway_world:app_from_env",
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
    ]  # fmt: skip
    with log.open("ab") as out:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=full_env, stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}:\n{log.read_text()}")
        try:
            return httpx.get(url + "/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(up, timeout=30, what=f"twinbill server on {url}")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- both services read through their own APIs ---------------------------------------------


class LegacyRaw:
    """localstripe through the stripe SDK: one customer's whole state."""

    def __init__(self, url: str, api_key: str) -> None:
        from sandbox.legacy.launcher import make_client

        self.client = make_client(url, api_key)

    def state(self, customer_id: str | None) -> Any:
        from sandbox.legacy.population import read_back

        if customer_id is None:
            return None
        return _stable(read_back(self.client, customer_id))


class NewRaw:
    """newbilling over plain HTTP: one user's whole bundle (404: nothing there)."""

    def __init__(self, url: str, token: str) -> None:
        self.http = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=10
        )

    def state(self, user_id: str) -> Any:
        resp = self.http.get(f"/v1/users/{user_id}/bundle")
        if resp.status_code == 404:
            return None
        resp.raise_for_status()
        return _stable(resp.json())


def _stable(value: Any) -> Any:
    """JSON-normalised (so two reads of unchanged state compare equal)."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


# -- response shapes --------------------------------------------------------------------------


#: Objects whose keys are data, not structure (``dict[str, str]`` in the canonical model).
MAPS = frozenset({"metadata"})


def shape(value: Any, key: str = "") -> Any:
    """The JSON schema of a value, reduced to what two responses must share.

    Objects: their keys, each with the shape of its value (free-form maps such as
    ``metadata``: one ``*`` key with the merged shape of the values). Arrays: the
    merged shape of their elements. Scalars: the JSON type; ``null`` (and an empty
    array's element) merges with any type: an optional field may be unset for one
    user only.
    """
    if isinstance(value, dict) and key in MAPS:
        merged: Any = "empty"
        for item in value.values():
            merged = merge(merged, shape(item))
        return {"*": merged}
    if isinstance(value, dict):
        return {k: shape(v, k) for k, v in sorted(value.items())}
    if isinstance(value, list):
        merged = "empty"
        for item in value:
            merged = merge(merged, shape(item))
        return [merged]
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    return "string"


def merge(a: Any, b: Any, where: str = "$") -> Any:
    """Two shapes as one; ``AssertionError`` naming the path where they disagree."""
    if a in ("null", "empty"):
        return b
    if b in ("null", "empty"):
        return a
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            raise AssertionError(
                f"{where}: keys differ: only left {sorted(set(a) - set(b))}, "
                f"only right {sorted(set(b) - set(a))}"
            )
        return {k: merge(a[k], b[k], f"{where}.{k}") for k in a}
    if isinstance(a, list) and isinstance(b, list):
        return [merge(a[0], b[0], f"{where}[]")]
    if a != b:
        raise AssertionError(f"{where}: {a} vs {b}")
    return a


# -- the contract document ------------------------------------------------------------------


def gateway_openapi(app: Any | None = None) -> dict[str, Any]:
    """The ``/api/v1`` paths of ``create_app(ctx).openapi()`` and the schemas they use.

    Without an app, one is built over a throwaway SQLite file and no backends
    (building the OpenAPI document calls neither system).
    """
    if app is None:
        app = _contract_app()
    full = app.openapi()
    paths = {p: v for p, v in sorted(full["paths"].items()) if p.startswith("/api/v1/")}
    schemas = full.get("components", {}).get("schemas", {})
    used: set[str] = set()
    pending = [paths]
    while pending:
        for ref in _refs(pending.pop()):
            name = ref.rsplit("/", 1)[-1]
            if name not in used:
                used.add(name)
                pending.append(schemas[name])
    doc: dict[str, Any] = {
        "openapi": full["openapi"],
        "info": {**full["info"], "title": "twinbill gateway"},
        "paths": paths,
        "components": {"schemas": {n: schemas[n] for n in sorted(used)}},
    }
    return _stable(doc)  # type: ignore[no-any-return]


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _contract_app() -> Any:
    import tempfile

    from admin.app import create_app
    from admin.bootstrap import bootstrap
    from core.settings import load_settings

    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(database_url=f"sqlite:///{tmp}/c.db", secret_key=SECRET_KEY)
        # The contract is the app's routes and schemas; no request reaches a backend.
        from core.canonical import System
        from tests.fakes.billing import FakeBillingBackend

        backends = {
            "legacy": FakeBillingBackend("legacy", System.LEGACY),
            "new": FakeBillingBackend("new", System.NEW),
        }
        ctx = bootstrap(settings, backends=backends)
        try:
            return create_app(ctx)
        finally:
            ctx.close()


def write_contract() -> Path:
    CONTRACT.write_text(json.dumps(gateway_openapi(), indent=2, sort_keys=True) + "\n")
    return CONTRACT


if __name__ == "__main__":
    print(f"wrote {write_contract().relative_to(ROOT)}")
