"""The browser side of the service: the dashboard (a static app in `static/dashboard`), the
login that trades the token for a cookie, the API docs with their scripts served from the
package (`static/vendor/swagger-ui`, from the npm package swagger-ui-dist), and 404/405 for
every URL no route answers. Nothing a page loads comes from another host; the pages' Content
Security Policy forbids it."""

from __future__ import annotations

from pathlib import Path

from fastapi import Request
from pydantic import BaseModel, Field

from .auth import SESSION_COOKIE, session_value
from .errors import ApiError

STATIC_DIR = Path(__file__).parent / "static"
CSP = ("default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; style-src 'self' 'unsafe-inline'; "
       "script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
       "form-action 'self'")
PAGE_HEADERS = {"Content-Security-Policy": CSP, "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer",
                "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}
SESSION_MAX_AGE_S = 30 * 24 * 3600


SERVE_CODE_TTL_S = 24 * 3600  # the link `spatia serve` prints
BUTTON_CODE_TTL_S = 120  # a link asked for by a client about to open it


class SessionIn(BaseModel):
    code: str | None = Field(None, min_length=1, max_length=512, description="a single-use sign-in code")
    token: str | None = Field(None, min_length=1, max_length=512, description="the service's token (typed in)")


class SignInLinkOut(BaseModel):
    code: str
    path: str = Field(description="open this path on the service (the code rides in the fragment)")
    expires_in_s: float


def _page(name: str):
    from starlette.responses import FileResponse

    return FileResponse(STATIC_DIR / "dashboard" / name, media_type="text/html", headers=PAGE_HEADERS)


def install_web(app, service) -> None:
    from fastapi import Depends
    from fastapi.staticfiles import StaticFiles

    from .routes.common import authorize
    from starlette.responses import JSONResponse, Response

    @app.get("/", include_in_schema=False)
    async def dashboard():
        return _page("index.html")

    @app.get("/login", include_in_schema=False)
    async def login_page():
        return _page("login.html")

    @app.get("/docs", include_in_schema=False)
    async def docs():
        return _page("docs.html")

    @app.post("/v1/session", tags=["system"], status_code=204, response_class=Response,
              summary="Trade a single-use sign-in code (or the token) for the dashboard's cookie "
                      "(HttpOnly, SameSite=Strict)")
    async def open_session(body: SessionIn, request: Request):
        if body.code is not None:
            if not service.sign_in_codes.redeem(body.code):
                raise ApiError(401, "unauthorized", "this sign-in link was used already or has expired; ask for a "
                               "new one (Blender's Open Dashboard button) or paste the token", "code")
        elif body.token is None or not service.auth.token_valid(body.token):
            raise ApiError(401, "unauthorized", "invalid token", "token")
        response = Response(status_code=204)
        response.set_cookie(SESSION_COOKIE, session_value(service.token), max_age=SESSION_MAX_AGE_S, path="/",
                            httponly=True, samesite="strict", secure=request.url.scheme == "https")
        return response

    @app.delete("/v1/session", tags=["system"], status_code=204, response_class=Response,
                summary="Forget the dashboard's cookie")
    async def close_session():
        response = Response(status_code=204)
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
        return response

    @app.post("/v1/session/links", tags=["system"], response_model=SignInLinkOut,
              dependencies=[Depends(authorize)],
              summary="A single-use sign-in link for the dashboard (for a client holding the token)")
    async def sign_in_link():
        code = service.sign_in_codes.grant(BUTTON_CODE_TTL_S)
        return {"code": code, "path": f"/login#code={code}", "expires_in_s": BUTTON_CODE_TTL_S}

    @app.get("/v1/session", tags=["system"], summary="Whether this browser may use the API")
    async def session_state(request: Request):
        signed_in = service.auth.session_valid(request.cookies.get(SESSION_COOKIE))
        return JSONResponse({"signed_in": signed_in, "token_required": service.auth.required},
                            headers={"Cache-Control": "no-store"})

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")


def install_fallback(app, routes: list) -> None:
    """Any URL no route answers: 404, or 405 with `Allow` where the path exists under other methods."""
    from starlette.routing import Match, Mount

    async def fallback(request):
        methods = set()
        for route in routes:
            if isinstance(route, Mount):
                continue
            for method in getattr(route, "methods", None) or ():
                match, _ = route.matches({**request.scope, "method": method})
                if match == Match.FULL:
                    methods.add(method)
        if methods:
            raise ApiError(405, "method_not_allowed", f"{request.method} is not allowed on {request.url.path!r}",
                           headers={"Allow": ", ".join(sorted(methods | {"OPTIONS"}))})
        raise ApiError(404, "not_found", f"no route {request.url.path!r}")

    app.router.add_route("/{path:path}", fallback, include_in_schema=False,
                         methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"])


__all__ = ["CSP", "STATIC_DIR", "install_fallback", "install_web"]
