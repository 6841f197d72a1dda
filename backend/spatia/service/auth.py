"""The API token: created once, kept in the data folder with owner-only permissions,
compared in constant time."""

from __future__ import annotations

import hmac
import os
import secrets
import stat
import threading
import time
from pathlib import Path

from .errors import ApiError

TOKEN_BYTES = 32
SESSION_COOKIE = "spatia_session"


def session_value(token: str) -> str:
    """The dashboard's cookie value for a token: derived from it (so it survives restarts and
    changes with the token), but not the token itself, which never reaches the browser's storage."""
    return hmac.new(token.encode(), b"spatia dashboard session v1", "sha256").hexdigest()


def load_or_create_token(path: Path) -> str:
    """The token stored at `path`, creating it (mode 0600, exclusive create) on first start."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            os.chmod(path, 0o600)  # readable by others: tighten rather than serve a leaked token
        token = path.read_text().strip()
        if not token:
            raise RuntimeError(f"{path} is empty; delete it to generate a new token")
        return token
    token = secrets.token_urlsafe(TOKEN_BYTES)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return token


class TokenCheck:
    """Checks `Authorization: Bearer <token>`.

    When the token is required a request without it gets 401. When it is optional (loopback
    without --require-token) a request without it passes, but a wrong token is still
    refused, so a misconfigured client learns about it at once.
    """

    def __init__(self, token: str, required: bool):
        self._token = token.encode()
        self._session = session_value(token).encode()
        self.required = required

    def token_valid(self, given: str) -> bool:
        return hmac.compare_digest(given.strip().encode(), self._token)

    def session_valid(self, cookie: str | None) -> bool:
        return bool(cookie) and hmac.compare_digest(cookie.encode(), self._session)

    def check(self, authorization: str | None, session: str | None = None) -> None:
        """`session`: the dashboard's cookie; a valid one stands for the token."""
        if not authorization and self.session_valid(session):
            return
        if not authorization:
            if self.required:
                raise ApiError(401, "unauthorized", "this server requires a token: send `Authorization: Bearer <token>` "
                               "(the token is in the server's data folder, file `token`)")
            return
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise ApiError(401, "unauthorized", "the Authorization header must be `Bearer <token>`")
        if not hmac.compare_digest(given.strip().encode(), self._token):
            raise ApiError(401, "unauthorized", "invalid token")


class SignInCodes:
    """Single-use codes that open a dashboard session, so that neither the token nor anything
    that stays valid ever sits in a URL: `spatia serve` prints a link with one, Blender's Open
    Dashboard button asks for one (with its token) and opens the link. A code works once, until
    it expires; the codes live in memory only (a restart forgets them)."""

    def __init__(self, max_codes: int = 64):
        self._codes: dict[str, float] = {}
        self._lock = threading.Lock()
        self._max = max_codes

    def grant(self, ttl_s: float) -> str:
        code = secrets.token_urlsafe(24)
        now = time.monotonic()
        with self._lock:
            self._codes = {c: t for c, t in self._codes.items() if t > now}
            while len(self._codes) >= self._max:
                self._codes.pop(next(iter(self._codes)))
            self._codes[code] = now + ttl_s
        return code

    def redeem(self, code: str) -> bool:
        """True once for a valid, unexpired code; the code is spent either way."""
        with self._lock:
            expires = None
            for known in list(self._codes):
                if hmac.compare_digest(known.encode(), code.encode()):
                    expires = self._codes.pop(known)
        return expires is not None and expires > time.monotonic()
