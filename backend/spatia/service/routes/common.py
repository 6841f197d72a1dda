"""What every route shares: the service, the token check, world id checks, and JSON bodies
parsed and validated off the event loop."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.params import Form
from fastapi.routing import APIRoute
from fastapi.security import HTTPBearer

from ..schemas import ERROR_RESPONSES

bearer = HTTPBearer(auto_error=False, description="the token from the server's data folder (file `token`)")


def service(request: Request):
    return request.app.state.service


def authorize(request: Request, _credentials=Security(bearer)) -> None:
    request.app.state.service.auth.check(request.headers.get("authorization"))


class OffLoopRoute(APIRoute):
    """A route whose JSON body is decoded and validated in a worker thread, not on the event loop.

    FastAPI parses and validates a body on the event loop before a plain `def` endpoint is sent
    to the thread pool; a 20 MB shot would hold up every other request (health, progress
    streams) for seconds. Here the body is received on the loop (bounded by BodyLimit), then
    FastAPI's whole handler (decoding, validation, the endpoint, response serialisation) runs on
    a private event loop in a worker thread. Only routes with a JSON body and a plain `def`
    endpoint are moved; streaming and form routes read their body on the server's loop.
    """

    def get_route_handler(self):
        handler = super().get_route_handler()
        body = self.body_field
        if body is None or isinstance(body.field_info, Form) or asyncio.iscoroutinefunction(self.endpoint):
            return handler

        async def off_loop(request: Request):
            await request.body()  # received here; the handler finds it cached
            return await run_in_threadpool(asyncio.run, handler(request))

        return off_loop


def v1_router(tag: str) -> APIRouter:
    return APIRouter(prefix="/v1", tags=[tag], dependencies=[Depends(authorize)], responses=ERROR_RESPONSES,
                     route_class=OffLoopRoute)
