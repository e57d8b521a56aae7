"""One error shape for every 4xx: ``{"error": {"type", "message", "fields"}}``.

Field locations are written the way a human reads the payload
(``invoices[2].lines[0].amount``) so a migration failure names the exact record.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException


class FieldError:
    """One bad field: where it is and what is wrong with it."""

    __slots__ = ("loc", "message")

    def __init__(self, loc: str, message: str) -> None:
        self.loc, self.message = loc, message

    def as_dict(self) -> dict[str, str]:
        return {"loc": self.loc, "message": self.message}


class ApiError(Exception):
    """Raised anywhere in a request; rendered by the handler below, rolling back the transaction."""

    def __init__(
        self,
        status: int,
        type_: str,
        message: str,
        fields: Iterable[FieldError] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.type, self.message = status, type_, message
        self.fields = list(fields)
        self.headers = headers

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "type": self.type,
                "message": self.message,
                "fields": [f.as_dict() for f in self.fields],
            }
        }


def not_found(what: str, ident: str) -> ApiError:
    return ApiError(404, "not_found", f"{what} {ident!r} not found")


def format_loc(loc: Sequence[str | int]) -> str:
    """``("body", "invoices", 2, "lines", 0, "amount")`` → ``invoices[2].lines[0].amount``."""
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "body"


def error_response(error: ApiError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


def install_handlers(app: FastAPI) -> None:
    """Turn every failure FastAPI/Starlette can raise into the one error shape."""

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        if any(e.get("type") == "json_invalid" for e in errors):
            detail = next(e for e in errors if e.get("type") == "json_invalid")
            reason = (detail.get("ctx") or {}).get("error", "invalid JSON")
            return error_response(
                ApiError(422, "malformed_json", f"request body is not valid JSON: {reason}")
            )
        fields = [FieldError(format_loc(e.get("loc", ())), _message(e)) for e in errors]
        summary = "; ".join(f"{f.loc}: {f.message}" for f in fields[:5])
        return error_response(
            ApiError(422, "validation_error", f"invalid request: {summary}", fields)
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        message = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        return error_response(ApiError(exc.status_code, kind, message, headers=exc.headers))


def _message(error: dict[str, Any]) -> str:
    msg = str(error.get("msg", "invalid value"))
    return msg.removeprefix("Value error, ")
