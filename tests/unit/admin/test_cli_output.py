"""CLI output rules via CliRunner: errors → exit 2 naming the fix (JSON under --json),
readable `users show` / `rollout show`, `webhooks tail|retry-dead`, README lists every command."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from admin.cli import app
from core.canonical import System
from core.db import transaction
from core.settings import load_settings
from multiplexer.bootstrap import build
from multiplexer.models import OutboxMessage
from tests.fakes.billing import FakeBillingBackend

README = Path(__file__).resolve().parents[3] / "README.md"


@pytest.fixture
def cli(admin, monkeypatch):
    for module in ("routes", "support", "webhooks", "inventory"):
        monkeypatch.setattr(f"admin.cli.{module}.mux_context", lambda: admin.ctx)
    return CliRunner()


@pytest.fixture
def empty_db_cli(tmp_path, monkeypatch):
    """A context over a database nobody upgraded (a fresh folder)."""
    settings = load_settings(database_url=f"sqlite:///{tmp_path / 'fresh.db'}")
    ctx = build(
        settings,
        backends={
            "legacy": FakeBillingBackend("legacy", System.LEGACY),
            "new": FakeBillingBackend("new", System.NEW),
        },
    )
    for module in ("routes", "support", "webhooks", "inventory"):
        monkeypatch.setattr(f"admin.cli.{module}.mux_context", lambda: ctx)
    yield CliRunner()
    ctx.close()


@pytest.mark.parametrize(
    "args",
    [["users", "sync"], ["users", "show", "u_1"], ["audit", "show"], ["webhooks", "tail"]],
)
def test_missing_schema_is_exit_2_naming_db_upgrade(empty_db_cli, args):
    result = empty_db_cli.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "run `twinbill db upgrade`" in result.stderr
    assert "Traceback" not in result.output and len(result.stderr.strip().splitlines()) <= 3
    as_json = empty_db_cli.invoke(app, [*args, "--json"])
    assert as_json.exit_code == 2
    assert json.loads(as_json.stdout)["error"]["fix"] == "run `twinbill db upgrade`"


def test_usage_errors_under_json_are_json(cli):
    result = cli.invoke(app, ["users", "show", "--json"])  # missing USER_ID
    assert result.exit_code == 2
    assert json.loads(result.stdout)["error"]["kind"] == "usage"
    unknown = cli.invoke(app, ["users", "show", "nobody", "--json"])
    assert unknown.exit_code == 2
    assert "unknown user 'nobody'" in json.loads(unknown.stdout)["error"]["message"]


def test_a_crash_exits_1_with_one_line_naming_its_traceback_file(tmp_path, monkeypatch):
    """Exit 2 is the operator's to fix; a bug needs a human: exit 1, one line, and the
    traceback (redacted) in a file, not on the terminal."""

    def crash():  # type: ignore[no-untyped-def]
        raise RuntimeError("boom for jane.doe@example.test")

    monkeypatch.setattr("admin.cli.context.database", crash)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    result = CliRunner().invoke(app, ["cohort", "list"])
    assert result.exit_code == 1, result.output
    (line,) = result.stderr.strip().splitlines()
    assert "unexpected RuntimeError" in line and "Traceback" not in result.output
    (trace,) = tmp_path.glob("twinbill-crash-*.log")
    assert str(trace) in line
    text = trace.read_text()
    assert "Traceback" in text and "in crash" in text and "jane.doe@" not in text
    as_json = CliRunner().invoke(app, ["cohort", "list", "--json"])
    assert as_json.exit_code == 1 and as_json.stderr == ""
    error = json.loads(as_json.stdout)["error"]
    assert error["kind"] == "bug" and error["trace"] in error["fix"]


@pytest.mark.parametrize("flags", [["--json"], ["--format", "json"]])
def test_reconcile_errors_are_json_under_either_machine_flag(flags):
    result = CliRunner().invoke(app, ["reconcile", *flags])  # no scope
    assert result.exit_code == 2
    assert json.loads(result.stdout)["error"]["message"] == "choose exactly one scope"


def test_users_show_prints_no_python_none(cli):
    result = cli.invoke(app, ["users", "show", "u_2"])
    assert result.exit_code == 0, result.output
    assert "None" not in result.stdout
    assert "cohort: — (in no cohort)" in result.stdout
    history = json.loads(cli.invoke(app, ["users", "show", "u_2", "--json"]).stdout)["history"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", history[0]["at"])


def test_rollout_show_prints_no_python_dict(cli):
    result = cli.invoke(app, ["rollout", "show"])
    assert result.exit_code == 0, result.output
    assert "{" not in result.stdout and "new users on the new system: 0.00%" in result.stdout
    assert json.loads(cli.invoke(app, ["rollout", "show", "--json"]).stdout)["allow"] == []


def test_audit_dates_are_iso_utc(cli):
    doc = json.loads(cli.invoke(app, ["audit", "show", "--json"]).stdout)
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", e["at"]) for e in doc)


def _outbox(admin, *statuses: str) -> list[int]:
    ids = []
    with transaction(admin.ctx.sessions) as s:
        for i, status in enumerate(statuses):
            m = OutboxMessage(
                event_id=f"evt_{i}",
                user_id="u_1",
                type="subscription.updated",
                body={"n": i},
                status=status,
                attempts=12 if status == "dead" else 1,
                last_error="HTTP 500 from the app" if status == "dead" else None,
            )
            s.add(m)
            s.flush()
            ids.append(m.id)
    return ids


def test_webhooks_tail_and_retry_dead(cli, admin):
    delivered, dead = _outbox(admin, "delivered", "dead")
    tail = cli.invoke(app, ["webhooks", "tail", "--json"])
    assert tail.exit_code == 0, tail.output
    assert [m["status"] for m in json.loads(tail.stdout)] == ["delivered", "dead"]
    only_dead = cli.invoke(app, ["webhooks", "tail", "--status", "dead"])
    assert f"#{dead}" in only_dead.stdout and f"#{delivered} " not in only_dead.stdout
    assert "HTTP 500 from the app" in only_dead.stdout
    refused = cli.invoke(app, ["webhooks", "retry-dead", str(dead)])  # no tty, no --yes
    assert refused.exit_code == 2 and "pass --yes" in refused.stderr
    with admin.ctx.sessions() as s:
        assert s.get(OutboxMessage, dead).status == "dead"
    done = cli.invoke(app, ["webhooks", "retry-dead", "--all", "--yes", "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout) == {"retried": [dead]}
    with admin.ctx.sessions() as s:
        assert (s.get(OutboxMessage, dead).status, s.get(OutboxMessage, dead).attempts) == (
            "pending",
            0,
        )
    audit = json.loads(cli.invoke(app, ["audit", "show", "--json"]).stdout)
    assert audit[0]["action"] == "webhook.retry" and audit[0]["actor"].startswith("cli:")
    again = cli.invoke(app, ["webhooks", "retry-dead", str(delivered), "--yes"])
    assert again.exit_code == 2 and "not dead" in again.stderr
    assert cli.invoke(app, ["webhooks", "retry-dead", "--yes"]).exit_code == 2  # ids or --all


def _command_paths(group, prefix=()):
    for name, cmd in sorted(group.commands.items()):
        if getattr(cmd, "hidden", False):
            continue
        if hasattr(cmd, "commands"):
            yield from _command_paths(cmd, (*prefix, name))
        else:
            yield (*prefix, name)


COMMAND = re.compile(r"twinbill ((?:[a-z][a-z-]*(?:\|[a-z][a-z-]*)*)(?: [a-z][a-z|-]*)?)")


def _readme_paths() -> set[tuple[str, ...]]:
    """Command lines of the README's command list: `twinbill a b|c ...` → (a, b), (a, c)."""
    text = README.read_text()
    block = text.split("## Commands", 1)[1].split("```text", 1)[1].split("```", 1)[0]
    paths: set[tuple[str, ...]] = set()
    for line in block.splitlines():
        for part in re.findall(
            r"twinbill ((?:[a-z][a-z-]*(?:\|[a-z][a-z-]*)*)(?: [a-z][a-z|-]*)?)", line
        ):
            words = part.split()
            heads = words[0].split("|")
            tails = words[1].split("|") if len(words) > 1 else [None]
            for h in heads:
                for t in tails:
                    paths.add((h, t) if t else (h,))
    return paths


def test_readme_command_list_matches_the_cli():
    from typer.main import get_command

    cli_paths = set(_command_paths(get_command(app)))
    documented = _readme_paths()
    groups = {p[0] for p in cli_paths if len(p) > 1}
    documented = {p for p in documented if not (len(p) == 1 and p[0] in groups)}
    documented = {p[:1] if p[0] not in groups else p for p in documented}
    assert cli_paths - documented == set(), "commands missing from README"
    assert documented - cli_paths == set(), "README lists commands that do not exist"


def test_every_command_and_option_has_help_and_examples():
    from typer.main import get_command

    root = get_command(app)
    missing = []
    for path in _command_paths(root):
        cmd = root
        for word in path:
            cmd = cmd.commands[word]
        if not (cmd.help or "").strip():
            missing.append(" ".join(path))
        elif "Example" not in cmd.help:
            missing.append(" ".join(path) + " (no example)")
        for p in cmd.params:
            if getattr(p, "param_type_name", "") == "option" and not (p.help or "").strip():
                missing.append(f"{' '.join(path)} {p.opts[0]}")
    assert missing == []


def test_version(cli):
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and re.fullmatch(r"twinbill \d+\.\d+\.\d+\n", result.stdout)


def test_webhooks_tail_follow_prints_new_messages_as_they_come(cli, admin, monkeypatch):
    _outbox(admin, "delivered")
    polls = []

    def next_poll(_seconds):
        polls.append(1)
        if len(polls) == 1:
            with transaction(admin.ctx.sessions) as s:
                s.add(
                    OutboxMessage(event_id="evt_late", user_id="u_2", type="invoice.paid", body={})
                )
        else:
            raise KeyboardInterrupt  # the operator presses Ctrl-C

    monkeypatch.setattr("admin.cli.webhooks.time.sleep", next_poll)
    result = cli.invoke(app, ["webhooks", "tail", "--follow", "--json"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [m["event_id"] for m in lines] == ["evt_0", "evt_late"]
