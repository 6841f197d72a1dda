"""What every route shares: the service, the token check, world id checks."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Security
from fastapi.security import HTTPBearer

from ..schemas import ERROR_RESPONSES

bearer = HTTPBearer(auto_error=False, description="the token from the server's data folder (file `token`)")


def service(request: Request):
    return request.app.state.service


def authorize(request: Request, _credentials=Security(bearer)) -> None:
    request.app.state.service.auth.check(request.headers.get("authorization"))


def v1_router(tag: str) -> APIRouter:
    return APIRouter(prefix="/v1", tags=[tag], dependencies=[Depends(authorize)], responses=ERROR_RESPONSES)
