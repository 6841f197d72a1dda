"""What clients may upload, decoded defensively: PNG/JPEG images, `.npy` arrays (never
pickles), PLY and safetensors point clouds; and a cap on every request body's size."""

from __future__ import annotations

import io
import json

import numpy as np
from starlette.exceptions import HTTPException

from .errors import invalid

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
NPY_MAGIC = b"\x93NUMPY"
PLY_MAGIC = b"ply"
MAX_IMAGE_PIXELS = 8192 * 8192
MAX_NPY_BYTES = 8192 * 8192 * 8


class BodyTooLarge(HTTPException):
    """Raised from inside body reading, so FastAPI passes it on unchanged (it re-raises HTTPException)."""

    def __init__(self, limit: int, json_body: bool = False):
        option = ("--max-json-mb; bulk point data goes in a pushed snapshot, which is streamed"
                  if json_body else "--max-upload-mb")
        super().__init__(413, f"request body exceeds the limit of {round(limit / 2**20, 3):g} MB "
                              f"{'for JSON ' if json_body else ''}(server option {option})")


class BodyLimit:
    """ASGI middleware: 413 for a declared Content-Length over the limit, and for a body that
    grows over it while streaming (chunked uploads declare no length). JSON bodies have their
    own, lower limit: decoding one holds the interpreter lock in long native calls, so its size
    bounds how long other requests may wait."""

    def __init__(self, app, limit: int, json_limit: int | None = None):
        self.app = app
        self.limit = limit
        self.json_limit = min(json_limit or limit, limit)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        media = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        is_json = media == b"application/json" or media.endswith(b"+json")
        limit = self.json_limit if is_json else self.limit
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return await self._reject(send, BodyTooLarge(limit, is_json))
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit, is_json)
            return message

        await self.app(scope, limited_receive, send)

    async def _reject(self, send, error: BodyTooLarge) -> None:
        body = json.dumps({"error": {"type": "payload_too_large", "message": error.detail,
                                     "field": None}}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


def _open_image(data: bytes, field: str, width: int, height: int):
    from PIL import Image, UnidentifiedImageError

    if not data.startswith((PNG_MAGIC, JPEG_MAGIC)):
        raise invalid(f"{field}: only PNG and JPEG images are accepted", field)
    try:
        image = Image.open(io.BytesIO(data), formats=["PNG", "JPEG"])
    except Image.DecompressionBombError:  # 30000 x 30000 and such: refused before any pixel is decoded
        raise invalid(f"{field}: the image declares more pixels than the limit of {MAX_IMAGE_PIXELS}", field) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise invalid(f"{field}: cannot read the image ({err})", field) from None
    if image.size[0] * image.size[1] > MAX_IMAGE_PIXELS:
        raise invalid(f"{field}: {image.size[0]}x{image.size[1]} is too large", field)
    if image.size != (width, height):
        raise invalid(f"{field}: image is {image.size[0]}x{image.size[1]}, the world is {width}x{height}", field)
    return image


def decode_image(data: bytes, field: str, width: int, height: int) -> np.ndarray:
    """PNG/JPEG bytes -> uint8 [H, W, 3] (alpha dropped, grey expanded)."""
    image = _open_image(data, field, width, height)
    try:
        return np.asarray(image.convert("RGB"))
    except (OSError, ValueError, SyntaxError) as err:  # truncated or corrupt image data
        raise invalid(f"{field}: cannot decode the image ({err})", field) from None


def decode_mask(data: bytes, field: str, width: int, height: int) -> np.ndarray:
    """PNG/JPEG bytes -> bool [H, W], True where the image is bright (> 127)."""
    image = _open_image(data, field, width, height)
    try:
        return np.asarray(image.convert("L")) > 127
    except (OSError, ValueError, SyntaxError) as err:
        raise invalid(f"{field}: cannot decode the mask ({err})", field) from None


def decode_npy(data: bytes, field: str) -> np.ndarray:
    """`.npy` bytes -> array; pickled (object) arrays, and headers that claim more data than the
    file holds (or than MAX_NPY_BYTES), are refused before anything is allocated."""
    from spatia.engine.memory.checks import SnapshotRejected, check_npy_header

    if not data.startswith(NPY_MAGIC):
        raise invalid(f"{field}: expected a .npy file (numpy.save)", field)
    try:
        check_npy_header(data, field, MAX_NPY_BYTES)
    except SnapshotRejected as err:
        raise invalid(str(err), field) from None
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise invalid(f"{field}: cannot read the .npy array ({err})", field) from None


def decode_depth(data: bytes, field: str, width: int, height: int) -> np.ndarray:
    """`.npy` z-depth in metres -> float32 [H, W]; 0 and non-finite values mean "no depth"."""
    depth = decode_npy(data, field)
    if depth.dtype.kind != "f":
        raise invalid(f"{field}: depth must be a float array, got {depth.dtype}", field)
    if depth.shape != (height, width):
        raise invalid(f"{field}: depth must be [{height}, {width}], got {list(depth.shape)}", field)
    depth = depth.astype(np.float32)
    depth[~np.isfinite(depth)] = 0.0  # renderers write inf where nothing was hit
    if (depth < 0).any():
        raise invalid(f"{field}: depth must not be negative (0 means no depth)", field)
    return depth


def point_cloud_suffix(data: bytes, field: str) -> str:
    """".ply" or ".safetensors" by content, checked as untrusted (a PLY's declared counts match
    its data; a snapshot's dtypes, shapes and ids are exact), or a 422 for anything else."""
    from spatia.engine.memory.checks import check_ply, check_snapshot_layout

    if data.startswith(PLY_MAGIC):
        check_ply(data, field)
        return ".ply"
    if len(data) > 9 and data[8:9] == b"{":
        check_snapshot_layout(data, field)
        return ".safetensors"
    raise invalid(f"{field}: expected a PLY file or a memory snapshot (.safetensors)", field)
