"""Start and stop a private localstripe server (see ``sandbox.legacy.server``).

One ``LocalStripe`` is one subprocess on a free loopback port with its own
state (none by default), so tests and demos can run several side by side::

    with LocalStripe() as ls:
        client = make_client(ls.url, ls.api_key)
        client.v1.customers.create({"email": "a@example.test"})

The global ``stripe.api_key`` is never touched: every caller builds its own
``stripe.StripeClient``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import weakref
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import stripe

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_API_KEY = "sk_test_twinbill_sandbox"
LOOPBACK = "127.0.0.1"


class LocalStripeError(RuntimeError):
    """The sandbox server could not be started, reached or configured."""


def free_loopback_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def make_client(url: str, api_key: str = DEFAULT_API_KEY) -> stripe.StripeClient:
    """A ``StripeClient`` that talks to localstripe at ``url`` and never retries.

    stripe 16 accepts plain ``http://`` base addresses. localstripe serves no
    file uploads or Connect OAuth, but "files" and "connect" point at it too so
    that a stray call fails against the sandbox instead of reaching stripe.com.
    """
    import stripe

    base = url.rstrip("/")
    return stripe.StripeClient(
        api_key,
        base_addresses={"api": base, "files": base, "connect": base, "meter_events": base},
        max_network_retries=0,
    )


def _terminate(proc: subprocess.Popen[bytes], timeout: float) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)


class LocalStripe:
    """A localstripe subprocess on a free loopback port.

    ``state_file=None`` keeps all state in memory (lost on stop). ``log_path``
    defaults to a file in a private temporary folder; its tail is quoted in
    every start-up error.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        state_file: str | os.PathLike[str] | None = None,
        log_path: str | os.PathLike[str] | None = None,
        api_key: str = DEFAULT_API_KEY,
        startup_timeout: float = 15.0,
        stop_timeout: float = 5.0,
        access_log: bool = False,
        python: str = sys.executable,
    ) -> None:
        self._requested_port = port
        self.state_file = Path(state_file) if state_file is not None else None
        self._log_path = Path(log_path) if log_path is not None else None
        self.api_key = api_key
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.access_log = access_log
        self.python = python
        self.port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None
        self._finalizer: weakref.finalize | None = None

    # -- lifecycle ---------------------------------------------------------

    @property
    def url(self) -> str:
        if self.port is None:
            raise LocalStripeError("localstripe is not started")
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def log_path(self) -> Path:
        if self._log_path is None:
            if self._tmpdir is None:
                self._tmpdir = tempfile.TemporaryDirectory(prefix="twinbill-localstripe-")
            self._log_path = Path(self._tmpdir.name) / "localstripe.log"
        return self._log_path

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> LocalStripe:
        if self.is_running():
            return self
        # A free port can be taken between our probe and the child's bind: retry
        # with a fresh one (only when the port was not imposed by the caller).
        attempts = 1 if self._requested_port is not None else 3
        for attempt in range(attempts):
            port = self._requested_port or free_loopback_port()
            try:
                self._spawn(port)
                self._wait_ready()
                return self
            except LocalStripeError:
                self.stop()
                if attempt == attempts - 1 or "address already in use" not in self.log_tail():
                    raise
        raise AssertionError("unreachable")

    def _spawn(self, port: int) -> None:
        cmd = [self.python, "-m", "sandbox.legacy.server", "--host", LOOPBACK, "--port", str(port)]
        if self.state_file is not None:
            cmd += ["--state-file", str(self.state_file)]
        if self.access_log:
            cmd.append("--access-log")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p
        )
        env["PYTHONUNBUFFERED"] = "1"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=str(PROJECT_ROOT),
                start_new_session=True,  # a Ctrl-C in the terminal is ours to forward
            )
        self.port = port
        self._finalizer = weakref.finalize(self, _terminate, self._proc, self.stop_timeout)

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.startup_timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            code = self._proc.poll()
            if code is not None:
                raise LocalStripeError(
                    f"localstripe exited with code {code} during start-up "
                    f"(port {self.port}, log {self.log_path}):\n{self.log_tail()}"
                )
            try:
                health = self._get_json("/_config/health", timeout=1.0)
                if health.get("pid") == self._proc.pid:
                    return
                last_error = LocalStripeError(f"port {self.port} answered for pid {health}")
            except (OSError, ValueError) as exc:
                last_error = exc
            time.sleep(0.05)
        raise LocalStripeError(
            f"localstripe did not answer on {self.url} within {self.startup_timeout:.0f}s "
            f"(last error: {last_error}; log {self.log_path}):\n{self.log_tail()}"
        )

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after ``stop_timeout``; never leaves a process behind."""
        proc, self._proc = self._proc, None
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        if proc is not None:
            _terminate(proc, self.stop_timeout)
        self.port = None

    def close(self) -> None:
        """Stop and remove the private log folder (if we made one)."""
        self.stop()
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None
            self._log_path = None

    def __enter__(self) -> LocalStripe:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    # -- localstripe's /_config API ------------------------------------------

    def client(self) -> stripe.StripeClient:
        return make_client(self.url, self.api_key)

    def health(self) -> dict[str, Any]:
        return self._get_json("/_config/health", timeout=5.0)

    def reset(self) -> None:
        """Forget every object (``DELETE /_config/data``)."""
        self._request("DELETE", "/_config/data")

    def register_webhook(
        self, name: str, url: str, secret: str, events: list[str] | None = None
    ) -> None:
        """Deliver events to ``url``, signed with ``secret`` like Stripe does.

        localstripe sends every event about one second after it happens; webhook
        registrations live in memory only (not in the state file).
        """
        payload: dict[str, Any] = {"url": url, "secret": secret}
        if events is not None:
            payload["events"] = list(events)
        self._request("POST", f"/_config/webhooks/{name}", payload)

    def _request(self, method: str, path: str, payload: dict[str, Any] | None = None) -> bytes:
        data = json.dumps(payload).encode() if payload is not None else None
        req = urllib.request.Request(  # noqa: S310 - fixed http://127.0.0.1 URL
            self.url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"} if data is not None else {},
        )
        try:
            with urllib.request.urlopen(req, timeout=10.0) as resp:  # noqa: S310
                return bytes(resp.read())
        except urllib.error.HTTPError as exc:
            body = exc.read().decode(errors="replace")
            raise LocalStripeError(f"{method} {path} answered {exc.code}: {body}") from exc
        except OSError as exc:
            raise LocalStripeError(
                f"{method} {path} failed: {exc} (log {self.log_path}):\n{self.log_tail(10)}"
            ) from exc

    def _get_json(self, path: str, timeout: float) -> dict[str, Any]:
        with urllib.request.urlopen(self.url + path, timeout=timeout) as resp:  # noqa: S310
            result = json.loads(resp.read())
        if not isinstance(result, dict):
            raise ValueError(f"unexpected answer from {path}: {result!r}")
        return result
