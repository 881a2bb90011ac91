"""Command line shared by the services: serve an app on a port or on an inherited socket."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from collections.abc import Sequence

import uvicorn
from fastapi import FastAPI


def serve(create_app: Callable[[], FastAPI], argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the service with uvicorn.")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8000, help="port to bind (default: %(default)s)")
    parser.add_argument(
        "--fd",
        type=int,
        default=None,
        help="serve on this already-bound listening socket instead of binding --host/--port",
    )
    args = parser.parse_args(argv)
    if args.fd is not None:
        # A socket bound by the parent (testinfra) leaves no window for another process to take the port.
        uvicorn.run(create_app(), fd=args.fd, log_level="info")
    else:
        uvicorn.run(create_app(), host=args.host, port=args.port, log_level="info")
