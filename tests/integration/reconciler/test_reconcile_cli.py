"""``twinbill reconcile`` as a subprocess against the migrated world: formats and bad input.

Exit codes: 0 clean, 1 differences found, 2 error. On an error nothing is
written: the number of rows in ``reconciliation_reports`` is the same before
and after.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from reconcile_world import World

from reconciler.render import CSV_COLUMNS
from sandbox.newbilling import models as nb

pytestmark = [pytest.mark.localstripe, pytest.mark.newbilling, pytest.mark.slow]

DIFFERENCE_KEYS = {
    "kind",
    "user_id",
    "record_type",
    "record_id",
    "field",
    "legacy_value",
    "new_value",
    "rule",
}
VIOLATION_KEYS = {
    "invariant",
    "user_id",
    "cohort",
    "subject",
    "legacy_value",
    "new_value",
    "message",
}


@contextlib.contextmanager
def changed_invoice_total(world: World, user_id: str) -> Iterator[dict[str, Any]]:
    """One invoice's ``total`` off by one on the new side; restored afterwards."""
    with world.new_db() as s:
        inv = s.scalars(
            sa.select(nb.Invoice)
            .where(nb.Invoice.user_id == user_id, nb.Invoice.status == "paid")
            .order_by(nb.Invoice.created_at, nb.Invoice.id)
        ).first()
        assert inv is not None
        before = inv.total
        inv.total = before + 1
        info = {"id": inv.id, "record_id": inv.external_id, "before": before}
    try:
        yield info
    finally:
        with world.new_db() as s:
            s.get(nb.Invoice, info["id"]).total = before


@pytest.fixture
def dirty_user(reconcile_world: World) -> Iterator[tuple[str, dict[str, Any]]]:
    uid = reconcile_world.user("two_subscriptions", "jpy").app_user_id
    with changed_invoice_total(reconcile_world, uid) as info:
        yield uid, info


# -- formats -------------------------------------------------------------------------


def test_json_format(reconcile_world: World, dirty_user: tuple[str, dict[str, Any]]) -> None:
    world, (uid, info) = reconcile_world, dirty_user
    rows = world.report_rows()
    run = world.cli("reconcile", "--user", uid, "--format", "json")
    assert run.code == 1, run.stderr
    doc = json.loads(run.stdout)
    assert doc["schema_version"] == 1
    assert set(doc) >= {
        "schema_version",
        "report",
        "clean",
        "summary",
        "population_violations",
        "results_truncated",
        "users",
    }
    assert set(doc["report"]) >= {"id", "created_at", "created_by", "scope"}
    assert doc["report"]["scope"] == {"kind": "user", "value": uid}
    assert doc["report"]["created_by"] == "cli"
    assert isinstance(doc["report"]["id"], int)  # stored: the admin UI can show it
    assert world.report_rows() == rows + 1
    assert doc["clean"] is False
    summary = doc["summary"]
    assert set(summary) >= {
        "users_checked",
        "users_clean",
        "users_with_differences",
        "users_skipped",
        "differences",
        "violations",
        "by_kind",
        "by_invariant",
        "by_field",
    }
    assert summary["users_checked"] == 1
    assert summary["by_kind"] == {"changed": 1}
    [group] = summary["by_field"]
    assert (group["kind"], group["record_type"], group["field"], group["count"]) == (
        "changed",
        "invoice",
        "total",
        1,
    )
    [user] = doc["users"]
    assert user["user_id"] == uid and user["clean"] is False
    [diff] = user["differences"]
    assert set(diff) == DIFFERENCE_KEYS
    assert diff == {
        "kind": "changed",
        "user_id": uid,
        "record_type": "invoice",
        "record_id": info["record_id"],
        "field": "total",
        "legacy_value": info["before"],
        "new_value": info["before"] + 1,
        "rule": "equal",
    }
    assert all(set(v) == VIOLATION_KEYS for v in user["violations"])


def test_csv_format(reconcile_world: World, dirty_user: tuple[str, dict[str, Any]]) -> None:
    world, (uid, info) = reconcile_world, dirty_user
    run = world.cli("reconcile", "--user", uid, "--format", "csv")
    assert run.code == 1, run.stderr
    table = list(csv.reader(io.StringIO(run.stdout)))
    assert tuple(table[0]) == CSV_COLUMNS
    rows = [dict(zip(CSV_COLUMNS, r, strict=True)) for r in table[1:]]
    diffs = [r for r in rows if r["kind"] != "violation"]
    assert diffs == [
        {
            "user_id": uid,
            "cohort": "",
            "kind": "changed",
            "record_type": "invoice",
            "record_id": info["record_id"],
            "field": "total",
            "legacy_value": str(info["before"]),
            "new_value": str(info["before"] + 1),
            "rule": "equal",
        }
    ]
    # the same run's JSON agrees on the number of rows: one per difference + violation
    doc = json.loads(world.cli("reconcile", "--user", uid, "--format", "json").stdout)
    per_user = sum(len(u["violations"]) for u in doc["users"])
    assert len(rows) == len(diffs) + per_user + len(doc["population_violations"])


def test_html_format(
    reconcile_world: World, dirty_user: tuple[str, dict[str, Any]], tmp_path: Path
) -> None:
    world, (uid, info) = reconcile_world, dirty_user
    out = tmp_path / "report.html"
    run = world.cli("reconcile", "--user", uid, "--format", "html", "--out", str(out))
    assert run.code == 1, run.stderr
    assert run.stdout.strip() == ""  # the page went to --out
    assert "written to" in run.stderr
    page = out.read_text(encoding="utf-8")
    assert page.count("<html") == 1 and page.rstrip().endswith("</html>")
    external = re.findall(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", page, re.IGNORECASE)
    assert external == []
    assert "<script" not in page.lower()
    assert "<link" not in page.lower()
    assert uid in page
    assert info["record_id"] in page
    assert re.search(r"<td>\s*total\s*</td>", page), "the changed field is named"


def test_table_format_clean_user_exits_zero(reconcile_world: World) -> None:
    world = reconcile_world
    uid = world.user("yearly", "jpy").app_user_id
    run = world.cli("reconcile", "--user", uid, "--refetch")
    assert run.code == 0, run.stdout + run.stderr
    assert "1 users checked, 1 clean" in run.stdout
    assert run.stdout.rstrip().endswith("CLEAN")


# -- bad input: exit 2, a clear message, nothing written -----------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--user", "u_nobody"), "unknown user 'u_nobody'"),
        (("--cohort", "no-such-cohort"), "no cohort named 'no-such-cohort'"),
        (("--user", "u_000001", "--all"), "choose exactly one scope"),
        (("--all", "--format", "xml"), "unknown format 'xml'"),
    ],
    ids=["unknown-user", "unknown-cohort", "two-scopes", "unknown-format"],
)
def test_bad_scope_exits_2_and_writes_nothing(
    reconcile_world: World, args: tuple[str, ...], message: str, tmp_path: Path
) -> None:
    world = reconcile_world
    rows = world.report_rows()
    out = tmp_path / "report.json"
    run = world.cli("reconcile", *args, "--out", str(out))
    assert run.code == 2, run.stdout + run.stderr
    assert message in run.stderr
    assert "Traceback" not in run.stderr
    assert run.stdout.strip() == ""
    assert not out.exists()
    assert world.report_rows() == rows


@pytest.mark.parametrize("scope", [("--user",), ("--all", "--refetch")], ids=["user", "all"])
def test_tampered_snapshot_exits_2_and_writes_nothing(
    reconcile_world: World, scope: tuple[str, ...], tmp_path: Path
) -> None:
    """A stored snapshot whose body was UPDATEd after the fact fails its content hash."""
    world = reconcile_world
    uid = world.user("cancel_at_period_end", "eur").app_user_id
    args = (*scope, uid) if scope == ("--user",) else scope
    rows = world.report_rows()
    out = tmp_path / "report.csv"
    with world.tampered_snapshot(uid) as snapshot_id:
        run = world.cli("reconcile", *args, "--format", "csv", "--out", str(out))
    assert run.code == 2, run.stdout + run.stderr
    message = " ".join(run.stderr.split())
    assert f"snapshot {snapshot_id} of user {uid} fails its content hash" in message
    assert "Traceback" not in run.stderr
    assert not out.exists()
    assert world.report_rows() == rows
    # restored: the same user checks clean again (and that run is stored)
    assert world.cli("reconcile", "--user", uid).code == 0


class _FakeNewService:
    """A tiny HTTP server answering every GET with one canned body (status 200)."""

    def __init__(self) -> None:
        self.body = b""
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                body = owner.body
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def fake_new_service() -> Iterator[_FakeNewService]:
    service = _FakeNewService()
    yield service
    service.close()


def _malformed(real: dict[str, Any], case: str) -> bytes:
    bundle = json.loads(json.dumps(real))
    if case == "not-json":
        return b"<html><body>502 upstream</body></html>"
    if case == "no-lists":
        return json.dumps({"user_id": real["user_id"]}).encode()
    if case == "wrong-type":
        bundle["invoices"][0]["total"] = "lots"
    elif case == "element-not-object":
        bundle["subscriptions"] = [None]
    elif case == "other-user":
        bundle["user_id"] = "u_someone_else"
    return json.dumps(bundle).encode()


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("not-json", "answer is not JSON"),
        ("no-lists", "subscriptions: field missing"),
        ("wrong-type", "total: expected"),
        ("element-not-object", "does not match the contract"),
        ("other-user", "belongs to 'u_someone_else'"),
    ],
)
def test_malformed_new_service_response_exits_2_and_writes_nothing(
    reconcile_world: World, fake_new_service: _FakeNewService, case: str, message: str
) -> None:
    """TWINBILL_NEW_BASE_URL pointed at a server whose bundle breaks the contract."""
    world = reconcile_world
    uid = world.user("yearly", "eur").app_user_id
    fake_new_service.body = _malformed(world.ctx.new.get_bundle(uid), case)
    rows = world.report_rows()
    run = world.cli(
        "reconcile", "--user", uid, "--refetch", env={"TWINBILL_NEW_BASE_URL": fake_new_service.url}
    )
    assert run.code == 2, run.stdout + run.stderr
    assert message in " ".join(run.stderr.split())
    assert "Traceback" not in run.stderr
    assert run.stdout.strip() == ""
    assert world.report_rows() == rows
