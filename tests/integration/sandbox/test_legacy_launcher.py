"""The localstripe launcher: loopback only, private state, clean stop, clear errors."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import legacy_fixtures
import pytest
import stripe

from sandbox.legacy.launcher import LocalStripe, LocalStripeError, make_client

pytestmark = pytest.mark.localstripe

# Shared fixtures live in legacy_fixtures.py (conftest.py belongs to another suite).
legacy_server = legacy_fixtures.legacy_server
legacy = legacy_fixtures.legacy
legacy_client = legacy_fixtures.legacy_client


def _listening_addresses(port: int) -> set[str]:
    """Local addresses (hex, as in /proc/net/tcp*) listening on ``port``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            addr, hex_port = fields[1].split(":")
            if int(hex_port, 16) == port and fields[3] == "0A":  # 0A = LISTEN
                found.add(addr)
    return found


def _non_loopback_ip() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("10.255.255.255", 1))  # no packet is sent
            ip = sock.getsockname()[0]
        except OSError:
            return None
    return None if ip.startswith("127.") else ip


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_binds_loopback_only(legacy: LocalStripe) -> None:
    assert legacy.url.startswith("http://127.0.0.1:")
    if sys.platform.startswith("linux"):
        # 0100007F is 127.0.0.1; upstream localstripe would show the :: wildcard.
        assert _listening_addresses(legacy.port) == {"0100007F"}
    ip = _non_loopback_ip()
    if ip is None:
        pytest.skip("no non-loopback address on this machine")
    with pytest.raises(OSError), socket.create_connection((ip, legacy.port), timeout=1):
        pass


def test_sdk_round_trip_and_reset(legacy: LocalStripe, legacy_client: stripe.StripeClient) -> None:
    created = legacy_client.v1.customers.create({"email": "ada.lovelace@example.test"})
    assert legacy_client.v1.customers.retrieve(created.id).email == "ada.lovelace@example.test"
    legacy.reset()
    with pytest.raises(stripe.InvalidRequestError) as err:
        legacy_client.v1.customers.retrieve(created.id)
    assert err.value.http_status == 404


def test_two_instances_keep_separate_state(legacy: LocalStripe) -> None:
    with LocalStripe() as other:
        assert other.port != legacy.port
        a, b = legacy.client(), other.client()
        only_in_a = a.v1.customers.create({"email": "a@example.test"})
        b.v1.customers.create({"email": "b@example.test"})
        assert [c.email for c in a.v1.customers.list()] == ["a@example.test"]
        assert [c.email for c in b.v1.customers.list()] == ["b@example.test"]
        with pytest.raises(stripe.InvalidRequestError):
            b.v1.customers.retrieve(only_in_a.id)


def test_state_file_survives_restart(tmp_path: Path) -> None:
    state = tmp_path / "legacy.pickle"
    with LocalStripe(state_file=state) as first:
        cus = first.client().v1.customers.create({"email": "kept@example.test"})
    assert state.exists()
    with LocalStripe(state_file=state) as second:
        assert second.client().v1.customers.retrieve(cus.id).email == "kept@example.test"


def test_stop_leaves_no_process() -> None:
    server = LocalStripe().start()
    pid = server.pid
    assert pid is not None and _process_exists(pid)
    server.stop()
    assert not server.is_running()
    assert not _process_exists(pid)
    server.stop()  # idempotent


def test_crash_during_start_is_a_clear_error(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.pickle"
    corrupt.write_bytes(b"this is not a pickle")
    server = LocalStripe(state_file=corrupt, log_path=tmp_path / "ls.log")
    with pytest.raises(LocalStripeError) as err:
        server.start()
    message = str(err.value)
    assert "exited with code" in message
    assert "UnpicklingError" in message  # the log tail is quoted
    assert not server.is_running()


def test_crash_after_start_is_a_clear_error(tmp_path: Path) -> None:
    server = LocalStripe(log_path=tmp_path / "ls.log").start()
    try:
        assert server._proc is not None
        server._proc.kill()
        server._proc.wait()
        with pytest.raises(LocalStripeError, match="failed"):
            server.reset()
    finally:
        server.stop()


def test_register_webhook_validates(legacy: LocalStripe) -> None:
    legacy.register_webhook("ok", "http://127.0.0.1:9/hook", "whsec_test", ["customer.created"])
    with pytest.raises(LocalStripeError, match="400"):
        legacy.register_webhook("bad", "ftp://nowhere", "whsec_test")


def test_make_client_never_sets_global_key() -> None:
    before = stripe.api_key
    client = make_client("http://127.0.0.1:1", "sk_test_x")
    assert isinstance(client, stripe.StripeClient)
    assert stripe.api_key == before


def test_webhook_is_delivered_signed(legacy: LocalStripe) -> None:
    import http.server
    import queue
    import threading

    received: queue.Queue[tuple[bytes, str]] = queue.Queue()

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.put((body, self.headers["Stripe-Signature"]))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/hook"
        legacy.register_webhook("test", url, "whsec_sandbox", ["customer.created"])
        legacy.client().v1.customers.create({"email": "hook@example.test"})
        body, signature = received.get(timeout=5)
        stripe.WebhookSignature.verify_header(body.decode(), signature, "whsec_sandbox")
        assert b'"customer.created"' in body
    finally:
        httpd.shutdown()
        httpd.server_close()
