"""Errors as the API reports them: `{"error": {"type", "message", "field"}}`, never a bare 500."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("spatia.service")


class ApiError(Exception):
    """An error with its HTTP status, a short machine-readable type and a message for people."""

    def __init__(self, status: int, type: str, message: str, field: str | None = None, extra: dict | None = None,
                 headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.type = type
        self.message = message
        self.field = field
        self.extra = extra or {}
        self.headers = headers

    def body(self) -> dict:
        return error_body(self.type, self.message, self.field, **self.extra)


def error_body(type: str, message: str, field: str | None = None, **extra) -> dict:
    return {"error": {"type": type, "message": message, "field": field, **extra}}


def not_found(what: str, ident: Any) -> ApiError:
    return ApiError(404, "not_found", f"{what} {ident!r} does not exist")


def invalid(message: str, field: str | None = None) -> ApiError:
    return ApiError(422, "invalid_request", message, field)


def conflict(message: str, field: str | None = None) -> ApiError:
    return ApiError(409, "conflict", message, field)


def stale(given: int, current: int | None, field: str = "parent", what: str = "memory") -> ApiError:
    """409 for a write based on a version that is no longer the current one; names the current one.
    `what`: the versioned thing written ("memory", "objects")."""
    return ApiError(409, "conflict", f"parent {given} is not the current {what} version ({current}); fetch version "
                    f"{current} and apply the change to it", field, extra={"current_version": current})


def stored_damage(version: int, err: Exception, what: str = "memory") -> ApiError:
    """409 for a stored version whose file does not check out: the request is fine, the server's
    state is not. The body says how to repair it (nothing stored is changed by the refusal)."""
    return ApiError(409, "stored_damage",
                    f"{what} version {version} is damaged on the server ({err}); it cannot be read or served. "
                    f"Repair it by pushing a good snapshot or reverting to an earlier version with parent={version}",
                    "version", extra={"damaged_version": version})


def precondition_required(current: int | None, what: str = "memory") -> ApiError:
    return ApiError(428, "precondition_required",
                    f"a write to a world's {what} must name the version it is based on: give `parent` "
                    f"or an `If-Match: \"<version>\"` header (the current version is {current})", "parent",
                    extra={"current_version": current})


def location(loc: tuple | list) -> str | None:
    """A pydantic error location as a field name: ('body', 'shot', 'frames', 0, 'w2c') -> 'shot.frames[0].w2c'."""
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header", "form", "cookie"):
        parts = parts[1:]
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or None


def install_handlers(app) -> None:
    """Turn every exception into the API's error body with a fitting status."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    from spatia.cameras.core import CameraError
    from spatia.engine.memory import MemoryFormatError
    from spatia.engine.memory.checks import SnapshotRejected
    from spatia.engine.models.base import ModelInputError, ModelUnavailable
    from spatia.engine.objects.store import ObjectStoreError
    from spatia.engine.plan import PlanError
    from spatia.engine.render import RenderError
    from spatia.formats.shot import ShotError
    from spatia.formats.video import VideoError
    from spatia.engine.world import WorldError

    def respond(status: int, body: dict, headers: dict | None = None) -> JSONResponse:
        return JSONResponse(body, status_code=status, headers=headers)

    @app.exception_handler(ApiError)
    async def _api(request, exc: ApiError):
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        if exc.headers:
            headers = {**(headers or {}), **exc.headers}
        return respond(exc.status, exc.body(), headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request, exc: RequestValidationError):
        errors = exc.errors()
        first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
        if first.get("type") == "json_invalid":  # not JSON at all: 400, as documented
            where = (first.get("ctx") or {}).get("error", "malformed")
            return respond(400, error_body("invalid_json", f"the request body is not valid JSON ({where})", "body"))
        field = location(first.get("loc", ()))
        message = "; ".join(
            f"{location(e.get('loc', ())) or 'request'}: {e.get('msg', 'invalid')}" for e in errors[:5]
        )
        if len(errors) > 5:
            message += f" (and {len(errors) - 5} more)"
        return respond(422, error_body("validation_error", message, field))

    @app.exception_handler(HTTPException)
    async def _http(request, exc: HTTPException):
        kind = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized",
                413: "payload_too_large"}.get(exc.status_code, "http_error")
        return respond(exc.status_code, error_body(kind, str(exc.detail)), getattr(exc, "headers", None))

    domain_errors = (WorldError, ShotError, PlanError, MemoryFormatError, CameraError, RenderError, VideoError,
                     ModelInputError)
    for error_type in domain_errors:
        @app.exception_handler(error_type)
        async def _domain(request, exc, error_type=error_type):
            return respond(422, error_body("invalid_request", str(exc)))

    @app.exception_handler(SnapshotRejected)
    async def _rejected(request, exc: SnapshotRejected):
        return respond(422, error_body("invalid_request", str(exc), exc.field))

    @app.exception_handler(ObjectStoreError)
    async def _objects_unreadable(request, exc: ObjectStoreError):
        # a stored objects file that does not check out (routes/objects.py names the world too)
        return respond(409, error_body("conflict", f"the stored object memory cannot be read: objects/{exc}"))

    @app.exception_handler(ModelUnavailable)
    async def _unavailable(request, exc):
        return respond(503, error_body("model_unavailable", str(exc)))

    @app.exception_handler(Exception)
    async def _internal(request, exc):
        log.exception("unhandled error in %s %s", request.method, request.url.path)
        return respond(500, error_body("internal_error", f"{type(exc).__name__}: {exc}"))
