"""Helpers shared by CLI modules: console, JSON output, error -> exit code."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer
from rich.console import Console

from core.errors import TwinbillError

console = Console()
err_console = Console(stderr=True)

EXIT_OK, EXIT_FOUND, EXIT_ERROR = 0, 1, 2


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


@contextmanager
def cli_errors() -> Iterator[None]:
    """Turn twinbill errors into a one-line message and exit code 2 (no traceback)."""
    try:
        yield
    except TwinbillError as exc:
        err_console.print(f"[bold red]error[/]: {exc}")
        raise typer.Exit(EXIT_ERROR) from None
