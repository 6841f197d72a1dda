"""Cross-site and DNS-rebinding protection, as ASGI middleware in front of every route.

- `Host` must name this machine's loopback (localhost, 127.0.0.0/8, [::1]), the address the
  server is bound to, or a name in `--allow-host` (for a reverse proxy). A page on
  attacker.example whose name was re-pointed at 127.0.0.1 sends `Host: attacker.example`
  and is refused with 403 before any route runs.
- A state-changing request (anything but GET, HEAD, OPTIONS) that carries an `Origin` is only
  accepted from the server's own origin or one in `--allow-origin`. Browsers send `Origin`
  on every cross-site POST, including the "simple" ones (form posts, text/plain bodies) that
  need no preflight; the CLI, the Python client and Blender send none.
- OPTIONS answers 204 with the route's `Allow` header (no CORS grant: cross-site scripts get
  nothing from this server).
"""

from __future__ import annotations

import functools
import ipaddress
import json
import re

from .config import is_loopback

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
LOOPBACK_NAMES = {"localhost", "localhost.", "127.0.0.1", "::1"}


# host[:port] as RFC 9110 allows it in a Host header: a name or IPv4 address, or an IPv6
# address in brackets; nothing else (no user info such as "127.0.0.1:80@evil.example").
_AUTHORITY = re.compile(r"(?:\[(?P<v6>[0-9a-f:.]+)\]|(?P<name>[a-z0-9._-]+))(?::(?P<port>[0-9]{1,5}))?")


def split_host(value: str) -> str:
    """The host name of a Host header or an origin's authority, lower case, without port or
    brackets; "" (refused) for anything that is not exactly host[:port]."""
    value = value.strip().lower()
    match = _AUTHORITY.fullmatch(value)
    if match is None:
        try:  # a bare IPv6 address (no port): "::1"
            return str(ipaddress.IPv6Address(value))
        except ValueError:
            return ""
    if match.group("port") is not None and int(match.group("port")) > 65535:
        return ""
    return match.group("v6") or match.group("name")


def host_allowed(name: str, bound: str, extra: tuple[str, ...]) -> bool:
    if not name:
        return False
    if name in LOOPBACK_NAMES or name in extra or is_loopback(name):
        return True
    bound = bound.strip("[]").lower()
    if name == bound:
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False  # a name not on the list: possibly a rebinding attack
    if bound in ("0.0.0.0", "::", ""):
        return _is_local_address(address)
    return False


def _is_local_address(address) -> bool:
    """True for an address of this machine (the server is bound to every address)."""
    return address.is_loopback or str(address) in _local_addresses()


@functools.lru_cache(maxsize=1)
def _local_addresses() -> frozenset[str]:
    import socket

    try:
        return frozenset(info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None))
    except OSError:
        return frozenset()


def origin_allowed(origin: str, host_header: str, extra: tuple[str, ...], scheme: str = "http") -> bool:
    """True for an origin in `extra`, or the server's own origin: the scheme it was reached by
    (`scheme`, http unless behind TLS) and the Host its pages were served from."""
    origin = origin.strip().rstrip("/").lower()
    if origin in extra:
        return True
    if origin == "null" or "://" not in origin:
        return False
    origin_scheme, authority = origin.split("://", 1)
    if origin_scheme != scheme.lower():  # https://127.0.0.1:P is another origin than http://127.0.0.1:P
        return False
    # the server's own pages (e.g. /docs) post with an Origin equal to the Host they were served from
    host = host_header.strip().lower()
    return bool(split_host(host)) and authority == host


class HostOriginGuard:
    def __init__(self, app, *, bound_host: str, allowed_hosts: tuple[str, ...] = (),
                 allowed_origins: tuple[str, ...] = ()):
        self.app = app
        self.bound_host = bound_host
        self.allowed_hosts = tuple(h.lower() for h in allowed_hosts)
        self.allowed_origins = tuple(o.lower().rstrip("/") for o in allowed_origins)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {}
        for key, value in scope.get("headers") or []:
            headers.setdefault(key.decode("latin-1").lower(), value.decode("latin-1"))
        host_header = headers.get("host", "")
        if not host_allowed(split_host(host_header), self.bound_host, self.allowed_hosts):
            return await _refuse(send, 403, "forbidden_host",
                                 f"Host {host_header!r} is not this server's address; requests must name a loopback "
                                 "address, the bound address or a host given with --allow-host (this refuses "
                                 "DNS-rebinding attacks)", "Host")
        origin = headers.get("origin")
        if origin is not None and scope["method"] not in SAFE_METHODS \
                and not origin_allowed(origin, host_header, self.allowed_origins, scope.get("scheme") or "http"):
            return await _refuse(send, 403, "forbidden_origin",
                                 f"cross-site request from Origin {origin!r} refused; allow an origin with "
                                 "--allow-origin", "Origin")
        return await self.app(scope, receive, send)


async def _refuse(send, status: int, kind: str, message: str, field: str | None) -> None:
    body = json.dumps({"error": {"type": kind, "message": message, "field": field}}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


__all__ = ["HostOriginGuard", "host_allowed", "origin_allowed", "split_host"]
