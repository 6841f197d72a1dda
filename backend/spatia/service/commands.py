"""`spatia serve`: run the backend service (added to the CLI by spatia.cli.main)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from spatia.formats.arguments import bounded_float, bounded_int, non_empty

from .config import (
    DEFAULT_HEAVY_WAIT_S,
    DEFAULT_HOST,
    DEFAULT_MAX_HEAVY_QUERIES,
    DEFAULT_MAX_JSON_MB,
    DEFAULT_MAX_UPLOAD_MB,
    DEFAULT_PORT,
    DEFAULT_PREVIEW_EVERY,
    ServiceConfig,
)

DEFAULT_DATA_DIR = Path("~/.spatia/service")


def register(subparsers) -> None:
    serve = subparsers.add_parser("serve", help="run the local backend service (HTTP API for Blender and the CLI)",
                                  description="Run the HTTP API of docs/http-api.md. Binds to loopback by default; "
                                              "any other address requires the token.")
    add_serve_arguments(serve)
    serve.set_defaults(func=_cmd_serve)


def _origin(text: str) -> str:
    """A browser origin: scheme://host[:port], nothing more."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(text.strip())
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or parts.path.strip("/") \
            or parts.query or parts.fragment or parts.username or parts.password:
        raise argparse.ArgumentTypeError(f"{text!r} is not an origin; write scheme://host[:port], "
                                         "e.g. https://studio.example")
    return text


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=DEFAULT_HOST, type=non_empty("an address to bind"), help=f"address to bind (default {DEFAULT_HOST})")
    parser.add_argument("--port", type=bounded_int(0, 65535), default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR), type=non_empty("a folder"),
                        help=f"worlds, job queue, token and logs (default {DEFAULT_DATA_DIR})")
    parser.add_argument("--require-token", action="store_true",
                        help="require the token even on loopback (always required on other addresses)")
    parser.add_argument("--workers", type=bounded_int(1, 64), default=1, help="job worker threads (default 1)")
    parser.add_argument("--max-upload-mb", type=bounded_float(0, 1_000_000, low_open=True), default=DEFAULT_MAX_UPLOAD_MB,
                        help=f"largest request body accepted, MB (default {DEFAULT_MAX_UPLOAD_MB})")
    parser.add_argument("--max-json-mb", type=bounded_float(0, 100_000, low_open=True), default=DEFAULT_MAX_JSON_MB,
                        help=f"largest JSON body accepted, MB (default {DEFAULT_MAX_JSON_MB}: about 2M points in an "
                             "edit); bulk point data goes in a pushed snapshot")
    parser.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                        help="also accept this Host header (a reverse proxy's name); repeatable. By default only "
                             "loopback names and the bound address are accepted")
    parser.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN", type=_origin,
                        help="accept state-changing requests from this browser origin, e.g. https://studio.example; "
                             "repeatable. By default requests carrying a foreign Origin are refused")
    parser.add_argument("--max-heavy-queries", type=bounded_int(1, 1024), default=DEFAULT_MAX_HEAVY_QUERIES,
                        help=f"renders, ray casts and box queries run at once (default {DEFAULT_MAX_HEAVY_QUERIES}); "
                             "more wait up to --heavy-wait-s, then get 429")
    parser.add_argument("--heavy-wait-s", type=bounded_float(0, 600), default=DEFAULT_HEAVY_WAIT_S,
                        help=f"how long a heavy query waits for a free slot (default {DEFAULT_HEAVY_WAIT_S:g} s)")
    parser.add_argument("--preview-every", type=int, default=DEFAULT_PREVIEW_EVERY, metavar="STEPS",
                        help=f"live previews of a denoising clip every STEPS steps, for the dashboard and Blender "
                             f"(default {DEFAULT_PREVIEW_EVERY}; 0: none)")
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])


def config_from_args(args) -> ServiceConfig:
    return ServiceConfig(data_dir=Path(args.data_dir).expanduser(), host=args.host, port=args.port,
                         require_token=args.require_token, workers=args.workers, max_upload_mb=args.max_upload_mb,
                         allowed_hosts=tuple(args.allow_host), allowed_origins=tuple(args.allow_origin),
                         max_heavy_queries=args.max_heavy_queries, max_json_mb=args.max_json_mb,
                         heavy_wait_s=args.heavy_wait_s, preview_every=args.preview_every)


def serve(config: ServiceConfig, *, extra_generators=None, log_level: str = "info") -> int:
    """Run until interrupted; running jobs become `interrupted` on shutdown and can be resumed."""
    import os

    import uvicorn

    from .app import DataDirBusy, create_app
    from .web import SERVE_CODE_TTL_S

    os.umask(0o077)  # everything the service writes (worlds, jobs, logs, the queue) is the user's alone
    try:
        app = create_app(config, extra_generators=extra_generators)
    except DataDirBusy as err:
        print(f"spatia serve: error: {err}", file=sys.stderr)
        return 2
    tune_runtime()
    token_note = (f"required (Authorization: Bearer <token>; the token is in {config.token_path})"
                  if config.token_required else f"optional on loopback (in {config.token_path})")
    print(f"spatia service: http://{config.host}:{config.port}/v1  data: {config.data_dir}  token: {token_note}",
          file=sys.stderr, flush=True)
    code = app.state.service.sign_in_codes.grant(SERVE_CODE_TTL_S)
    print(f"dashboard: {dashboard_login_url(config, code)}  (single-use sign-in link)", file=sys.stderr, flush=True)
    uvicorn.run(app, host=config.host, port=config.port, log_level=log_level, timeout_graceful_shutdown=30)
    return 0


def dashboard_login_url(config: ServiceConfig, code: str) -> str:
    """The dashboard's sign-in link with a single-use code (never the token). The code rides in
    the fragment, which browsers never send to the server (so it is in no request line or log);
    the page trades it for a cookie and replaces the link in the browser's history."""
    host = config.host
    if host in ("0.0.0.0", "", "::"):
        host = "127.0.0.1"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{config.port}/login#code={code}"


def tune_runtime() -> None:
    """A responsive event loop beside CPU-bound request threads.

    The interpreter lock passes between threads every 1 ms instead of 5: /v1/health hops
    between the event loop and a thread a few times, and each hop may wait one interval
    while another thread decodes a large body.

    Fewer, cheaper garbage collections for a server that parses large JSON bodies.
    A collection holds the interpreter lock while it walks every tracked object; with the
    defaults, a body of a million points (millions of small lists) triggers collections that
    stall every thread, /v1/health on the event loop included, for 100-300 ms at a time.
    Objects alive after start-up are frozen (never walked again) and the young generation
    collects every 50,000 allocations instead of 700."""
    import gc

    sys.setswitchinterval(0.001)
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def _cmd_serve(args) -> int:
    data_dir = Path(args.data_dir).expanduser()
    for folder in (data_dir, *data_dir.parents):
        if folder.exists():
            if not folder.is_dir():
                raise ValueError(f"--data-dir {args.data_dir}: {folder} is a file, not a folder")
            break
    return serve(config_from_args(args), log_level=args.log_level)


if __name__ == "__main__":  # python -m spatia.service.commands [serve options]
    parser = argparse.ArgumentParser(prog="spatia serve")
    add_serve_arguments(parser)
    sys.exit(_cmd_serve(parser.parse_args()))
