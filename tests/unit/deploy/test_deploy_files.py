"""The deploy files only run commands the CLI has, and name only settings that exist."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from typer.main import get_command

from admin.cli import app
from core.settings import Settings

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"


def _cli_paths() -> set[tuple[str, ...]]:
    root = get_command(app)
    paths: set[tuple[str, ...]] = set()

    def walk(cmd, prefix):  # type: ignore[no-untyped-def]
        for name, sub in getattr(cmd, "commands", {}).items():
            paths.add((*prefix, name))
            walk(sub, (*prefix, name))

    walk(root, ())
    return paths


def _twinbill_commands() -> list[list[str]]:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    commands = [svc["command"] for svc in compose["services"].values() if "command" in svc]
    docker_cmd = re.search(r"^CMD (\[.*\])$", (DEPLOY / "Dockerfile").read_text(), re.M)
    assert docker_cmd, "Dockerfile has no CMD"
    commands.append(yaml.safe_load(docker_cmd.group(1)))
    return [c for c in commands if c and c[0] == "twinbill"]


def test_every_twinbill_command_in_deploy_files_exists():
    cli = _cli_paths()
    commands = _twinbill_commands()
    assert len(commands) >= 5  # web, worker, beat, schema, image default
    for command in commands:
        words = tuple(w for w in command[1:] if not w.startswith("-"))
        assert any(words[: len(p)] == p for p in cli if len(p) <= len(words)), command


def test_compose_runs_the_production_shape():
    services = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    assert {"postgres", "redis", "web", "worker", "beat"} <= set(services)


def test_env_example_names_only_real_settings():
    fields = {f"TWINBILL_{name.upper()}" for name in Settings.model_fields}
    fields |= {f.alias for f in Settings.model_fields.values() if f.alias}
    names = [
        line.split("=", 1)[0]
        for line in (DEPLOY / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    unknown = [n for n in names if n.startswith("TWINBILL_") and n not in fields]
    assert unknown == []
    assert {"TWINBILL_DATABASE_URL", "TWINBILL_REDIS_URL", "TWINBILL_SECRET_KEY"} <= set(names)
