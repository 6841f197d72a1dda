"""What every route shares: the service, the token check, world id checks, and JSON bodies
parsed and validated off the event loop."""

from __future__ import annotations

import asyncio
import gc
import re
import threading
from contextlib import contextmanager

from fastapi import APIRouter, Depends, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.params import Form
from fastapi.routing import APIRoute
from fastapi.security import HTTPBearer
from pydantic import BeforeValidator

from ..auth import SESSION_COOKIE
from ..schemas import ERROR_RESPONSES

WHOLE_NUMBER = re.compile(r"[0-9]{1,19}")


def whole_number(value):
    """A path or query number as the URL wrote it: ASCII digits only ("1.0", "1e3", "+1", "true"
    and "²" are refused rather than read as numbers)."""
    if isinstance(value, str) and not WHOLE_NUMBER.fullmatch(value):
        raise ValueError(f"must be a whole number written with digits, got {value!r}")
    return value


WholeNumber = BeforeValidator(whole_number)

bearer = HTTPBearer(auto_error=False, description="the token from the server's data folder (file `token`)")


async def service(request: Request):
    return request.app.state.service


async def authorize(request: Request, _credentials=Security(bearer)) -> None:
    """Async (it only compares a header), so no request waits for a worker thread to be checked."""
    request.app.state.service.auth.check(request.headers.get("authorization"), request.cookies.get(SESSION_COOKIE))


LARGE_BODY_BYTES = 1 << 20
_paused = 0
_paused_lock = threading.Lock()


@contextmanager
def collection_paused():
    """No automatic garbage collection while a large body is decoded and handled.

    Decoding a million-point body allocates millions of lists; the collections this triggers
    each walk all of them while holding the interpreter lock, pausing every other thread (the
    event loop answering /v1/health included) for a quarter of a second at a time. Those
    objects hold no reference cycles and are freed by reference counting when the request
    ends, so nothing is lost by not collecting meanwhile. Nested and concurrent uses count."""
    global _paused
    with _paused_lock:
        _paused += 1
        if _paused == 1:
            gc.disable()
    try:
        yield
    finally:
        with _paused_lock:
            _paused -= 1
            if _paused == 0:
                gc.enable()


def _run_handler(handler, request, large: bool):
    if not large:
        return asyncio.run(handler(request))
    with collection_paused():
        return asyncio.run(handler(request))


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
            body = await request.body()  # received here; the handler finds it cached
            return await run_in_threadpool(_run_handler, handler, request, len(body) > LARGE_BODY_BYTES)

        return off_loop


def v1_router(tag: str) -> APIRouter:
    return APIRouter(prefix="/v1", tags=[tag], dependencies=[Depends(authorize)], responses=ERROR_RESPONSES,
                     route_class=OffLoopRoute)
