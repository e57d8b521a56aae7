"""Both billing systems of the sandbox as processes: localstripe (legacy) and newbilling (new).

Two ways to run them:

* ``Stack`` — a context manager whose processes die with the caller (demo, tests);
* ``up`` / ``down`` / ``status`` — detached processes recorded in a state file in the
  working folder (``.twinbill-sandbox/state.json``) so later commands find them.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType

LOOPBACK = "127.0.0.1"
STATE_DIR = Path(".twinbill-sandbox")


class SandboxError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def wait_http(
    url: str, proc: subprocess.Popen[bytes] | None, log: Path, timeout: float = 20.0
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SandboxError(f"{url} exited with {proc.returncode}:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:  # noqa: S310 - loopback only
                if resp.status < 500:
                    return
        except OSError:
            time.sleep(0.1)
    raise SandboxError(f"{url} did not answer within {timeout:.0f}s:\n{_tail(log)}")


def _tail(log: Path, lines: int = 20) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class Endpoints:
    legacy_url: str
    legacy_api_key: str
    new_url: str
    new_api_token: str
    new_webhook_secret: str
    legacy_pid: int | None = None
    new_pid: int | None = None

    def env(self) -> dict[str, str]:
        """The variables that point twinbill at this sandbox."""
        return {
            "TWINBILL_LEGACY_BACKEND": "localstripe",
            "TWINBILL_LEGACY_API_BASE": self.legacy_url,
            "TWINBILL_LEGACY_API_KEY": self.legacy_api_key,
            "TWINBILL_NEW_BASE_URL": self.new_url,
            "TWINBILL_NEW_API_TOKEN": self.new_api_token,
            "TWINBILL_NEW_WEBHOOK_SECRET": self.new_webhook_secret,
        }


def _commands(
    workdir: Path, legacy_port: int, new_port: int, *, new_db_url: str | None, persist: bool
) -> tuple[list[str], list[str]]:
    legacy = [
        sys.executable,
        "-m",
        "sandbox.legacy.server",
        "--host",
        LOOPBACK,
        "--port",
        str(legacy_port),
    ]
    if persist:
        legacy += ["--state-file", str(workdir / "localstripe.pickle")]
    db = new_db_url or f"sqlite:///{workdir / 'newbilling.db'}"
    new = [
        sys.executable,
        "-m",
        "sandbox.newbilling",
        "serve",
        "--host",
        LOOPBACK,
        "--port",
        str(new_port),
        "--database-url",
        db,
    ]
    return legacy, new


def _spawn(
    cmd: list[str], log: Path, env: dict[str, str], *, detached: bool
) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    fh = log.open("ab")
    try:
        return subprocess.Popen(
            cmd,
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=detached,
            stdin=subprocess.DEVNULL,
        )
    finally:
        fh.close()


def _start(
    workdir: Path,
    *,
    detached: bool,
    new_db_url: str | None,
    persist: bool,
    new_env: dict[str, str] | None = None,
) -> tuple[Endpoints, list[subprocess.Popen[bytes]]]:
    workdir.mkdir(parents=True, exist_ok=True)
    legacy_port, new_port = free_port(), free_port()
    token = "nb_" + secrets.token_urlsafe(24)
    secret = "whsec_" + secrets.token_urlsafe(24)
    legacy_cmd, new_cmd = _commands(
        workdir, legacy_port, new_port, new_db_url=new_db_url, persist=persist
    )
    env = {
        **os.environ,
        "NEWBILLING_API_TOKENS": token,
        "NEWBILLING_WEBHOOK_SECRET": secret,
        **(new_env or {}),
    }
    procs = [
        _spawn(legacy_cmd, workdir / "localstripe.log", env, detached=detached),
        _spawn(new_cmd, workdir / "newbilling.log", env, detached=detached),
    ]
    ep = Endpoints(
        f"http://{LOOPBACK}:{legacy_port}",
        "sk_test_twinbill_sandbox",
        f"http://{LOOPBACK}:{new_port}",
        token,
        secret,
        procs[0].pid,
        procs[1].pid,
    )
    try:
        wait_http(ep.legacy_url + "/_config/health", procs[0], workdir / "localstripe.log")
        wait_http(ep.new_url + "/healthz", procs[1], workdir / "newbilling.log")
    except SandboxError:
        for p in procs:
            _stop_pid(p.pid)
        raise
    return ep, procs


def _stop_pid(pid: int | None, timeout: float = 5.0) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
            with contextlib.suppress(ChildProcessError):  # reap it if it is our child
                os.waitpid(pid, os.WNOHANG)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return True


class Stack:
    """Both services for the lifetime of a ``with`` block."""

    def __init__(
        self, workdir: Path, *, new_db_url: str | None = None, new_env: dict[str, str] | None = None
    ) -> None:
        self.workdir = workdir
        self._new_db_url = new_db_url
        self._new_env = new_env
        self._procs: list[subprocess.Popen[bytes]] = []
        self.endpoints: Endpoints | None = None

    def __enter__(self) -> Endpoints:
        self.endpoints, self._procs = _start(
            self.workdir,
            detached=False,
            new_db_url=self._new_db_url,
            persist=False,
            new_env=self._new_env,
        )
        return self.endpoints

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        for proc in self._procs:
            _stop_pid(proc.pid)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()


def state_file(folder: Path = STATE_DIR) -> Path:
    return folder / "state.json"


def up(folder: Path = STATE_DIR) -> Endpoints:
    existing = read_state(folder)
    if existing and _alive(existing.legacy_pid) and _alive(existing.new_pid):
        return existing
    ep, _ = _start(folder, detached=True, new_db_url=None, persist=True)
    state_file(folder).write_text(json.dumps(asdict(ep), indent=2))
    os.chmod(state_file(folder), 0o600)
    return ep


def read_state(folder: Path = STATE_DIR) -> Endpoints | None:
    path = state_file(folder)
    if not path.exists():
        return None
    return Endpoints(**json.loads(path.read_text()))


def status(folder: Path = STATE_DIR) -> dict[str, object]:
    ep = read_state(folder)
    if ep is None:
        return {"running": False}
    return {
        "running": _alive(ep.legacy_pid) and _alive(ep.new_pid),
        "legacy": {"url": ep.legacy_url, "pid": ep.legacy_pid, "alive": _alive(ep.legacy_pid)},
        "new": {"url": ep.new_url, "pid": ep.new_pid, "alive": _alive(ep.new_pid)},
    }


def down(folder: Path = STATE_DIR) -> list[int]:
    ep = read_state(folder)
    if ep is None:
        return []
    stopped = [pid for pid in (ep.legacy_pid, ep.new_pid) if pid and _stop_pid(pid)]
    state_file(folder).unlink(missing_ok=True)
    return stopped


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
