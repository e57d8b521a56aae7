"""CLI: ``python -m sandbox.newbilling serve|openapi``.

``serve`` binds 127.0.0.1 by default: this is a sandbox holding fake money and a
test-only wipe endpoint, it has no business listening on every interface.
"""

from __future__ import annotations

import argparse
import json
import sys

from .settings import ConfigError, Settings


def _openapi() -> int:
    from .app import create_app

    app = create_app(Settings(api_tokens=("openapi",), database_url="sqlite://"))
    sys.stdout.write(json.dumps(app.openapi(), indent=2, sort_keys=True) + "\n")
    return 0


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from .app import create_app

    try:
        settings = Settings.from_env(
            database_url=args.database_url,
            api_tokens=tuple(t for t in args.api_tokens.split(",") if t)
            if args.api_tokens
            else None,
            webhook_url=args.webhook_url,
            webhook_secret=args.webhook_secret,
            rate_limit=args.rate_limit,
        )
    except ConfigError as exc:
        print(f"newbilling: cannot start: {exc}", file=sys.stderr)
        return 2
    print(
        f"newbilling: serving on http://{args.host}:{args.port} "
        f"(database {settings.database_url.split('@')[-1]})",
        file=sys.stderr,
    )
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level=args.log_level)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.newbilling", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the HTTP service (creates tables on start)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8765)
    serve.add_argument("--database-url", help="overrides NEWBILLING_DATABASE_URL")
    serve.add_argument("--api-tokens", help="overrides NEWBILLING_API_TOKENS (comma-separated)")
    serve.add_argument("--webhook-url", help="overrides NEWBILLING_WEBHOOK_URL")
    serve.add_argument("--webhook-secret", help="overrides NEWBILLING_WEBHOOK_SECRET")
    serve.add_argument("--rate-limit", type=float, help="overrides NEWBILLING_RATE_LIMIT (req/s)")
    serve.add_argument("--log-level", default="warning")
    sub.add_parser("openapi", help="print the OpenAPI document (docs/contract/...openapi.json)")
    args = parser.parse_args(argv)
    if args.command == "openapi":
        return _openapi()
    return _serve(args)


if __name__ == "__main__":
    raise SystemExit(main())
