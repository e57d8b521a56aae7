"""``twinbill sandbox``: both billing systems on this machine, for development and demos."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from admin.cli.common import EXIT_ERROR, JSON_HELP, console, err_console, fail, group, print_json

app = group("Local sandbox: localstripe (legacy) + reference newbilling (new), on loopback.")

FOLDER = typer.Option(Path(".twinbill-sandbox"), "--folder", help="state folder")


@app.command()
def up(folder: Path = FOLDER) -> None:
    """Start both services in the background (free loopback ports) and print their env.

    \b
    Example:
      eval "$(twinbill sandbox up | grep ^export)"
    """
    from sandbox import stack

    try:
        ep = stack.up(folder)
    except stack.SandboxError as exc:
        err_console.print(f"[red]sandbox failed to start[/]: {exc}")
        raise typer.Exit(EXIT_ERROR) from None
    console.print(f"legacy (localstripe): [bold]{ep.legacy_url}[/]  pid {ep.legacy_pid}")
    console.print(f"new (newbilling):     [bold]{ep.new_url}[/]  pid {ep.new_pid}")
    console.print("\nPoint twinbill at them (secrets are in the state file, mode 0600):")
    for key, value in ep.env().items():
        console.print(f"export {key}={value}", highlight=False, soft_wrap=True)


@app.command()
def status(
    folder: Path = FOLDER, json: bool = typer.Option(False, "--json", help=JSON_HELP)
) -> None:
    """Show whether the sandbox services are running (exit 1 when they are not).

    \b
    Example:
      twinbill sandbox status --json
    """
    from sandbox import stack

    info = stack.status(folder)
    if json:
        print_json(info)
    elif not info["running"] and "legacy" not in info:
        console.print("sandbox is not running (twinbill sandbox up)")
    else:
        table = Table("service", "url", "pid", "alive")
        for name in ("legacy", "new"):
            s = info[name]
            table.add_row(name, s["url"], str(s["pid"]), "yes" if s["alive"] else "[red]no[/]")
        console.print(table)
    raise typer.Exit(0 if info["running"] else 1)


@app.command()
def down(folder: Path = FOLDER) -> None:
    """Stop both services; leaves no process behind.

    \b
    Example:
      twinbill sandbox down
    """
    from sandbox import stack

    stopped = stack.down(folder)
    console.print(f"stopped {len(stopped)} process(es)" if stopped else "nothing was running")


@app.command()
def seed(
    users: int = typer.Option(60, "--users", min=1, max=100_000, help="how many customers"),
    seed: int = typer.Option(7, "--seed", help="same seed, same population"),
    folder: Path = FOLDER,
    json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Create a deterministic staging population in the running legacy sandbox.

    Every customer carries its app user id in metadata `app_user_id`.

    \b
    Example:
      twinbill sandbox seed --users 200 --seed 7
    """
    from sandbox import stack
    from sandbox.legacy.launcher import make_client
    from sandbox.legacy.population import seed as seed_population

    ep = stack.read_state(folder)
    if ep is None or not stack.status(folder)["running"]:
        raise fail("sandbox is not running", "start it with `twinbill sandbox up`")
    seeded = seed_population(make_client(ep.legacy_url, ep.legacy_api_key), users, seed)
    if json:
        print_json(
            [
                {
                    "app_user_id": u.app_user_id,
                    "customer_id": u.customer_id,
                    "config": u.config,
                    "currency": u.currency,
                }
                for u in seeded
            ]
        )
        return
    print_population(seeded)


def print_population(seeded: list) -> None:  # type: ignore[type-arg]
    table = Table(
        "app user",
        "legacy customer",
        "configuration",
        "currency",
        title=f"{len(seeded)} seeded users",
    )
    for u in seeded:
        table.add_row(u.app_user_id, u.customer_id, u.config, u.currency.upper())
    console.print(table)
