"""``stellatune serve``: run the backend service (docs/service.md)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Optional

from ..errors import EngineError, ServiceError
from ..service import default_socket_path
from .context import add_plugins_dir_option, plugins_dir

__all__ = ["register", "parse_hostport"]


def parse_hostport(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) → (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    if int(port) > 65535:
        raise argparse.ArgumentTypeError(f"port {port} is out of range (0-65535)")
    return host.strip("[]"), int(port)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("serve", help="run the player as a service with a JSON-RPC control API")
    p.add_argument(
        "--socket", type=Path, metavar="PATH", help="unix socket (default: $XDG_RUNTIME_DIR/stellatune.sock)"
    )
    p.add_argument(
        "--output", metavar="OUTPUT", default=None, help="device name/index, null or file:PATH.wav (default: device)"
    )
    p.add_argument("--events-log", type=Path, metavar="PATH", help="write every event as JSON lines (rotated)")
    p.add_argument("--events-log-max-bytes", type=int, default=10 << 20, metavar="N", help="rotate past N bytes")
    p.add_argument("--metrics", type=parse_hostport, metavar="HOST:PORT", help="serve Prometheus /metrics there")
    p.add_argument("--tcp", type=parse_hostport, metavar="HOST:PORT", help="also listen on loopback TCP (token)")
    p.add_argument("--token-file", type=Path, metavar="F", help="the bearer token --tcp needs (first line)")
    p.add_argument("--cache-dir", type=Path, metavar="DIR", help="the component compile cache")
    add_plugins_dir_option(p)
    p.set_defaults(func=cmd_serve)


_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def cmd_serve(args: argparse.Namespace) -> int:
    from ..service.app import ServiceApp
    from ..service.eventlog import EventLog
    from ..service.metrics import start_metrics_server
    from ..service.server import Server, claim_socket_path

    token: Optional[str] = None
    if args.tcp is not None:
        if args.tcp[0] not in _LOOPBACK:
            raise EngineError(f"--tcp only listens on loopback (127.0.0.1, ::1), not {args.tcp[0]}")
        if args.token_file is None:
            raise EngineError("--tcp needs --token-file")
        try:
            token = args.token_file.read_text(encoding="utf-8").strip().splitlines()[0].strip()
        except (OSError, IndexError) as e:
            raise EngineError(f"cannot read a token from {args.token_file}: {e}") from e
        if len(token) < 16:
            raise EngineError("the token must be at least 16 characters")
    output = args.output
    if isinstance(output, str) and output.isdigit():
        output = int(output)
    socket_path = args.socket or default_socket_path()
    try:
        # Before anything is built: a second service must not sync plugins or open the device.
        claim_socket_path(socket_path)
    except OSError as e:
        raise ServiceError(f"cannot serve on {socket_path}: {e}") from e
    app = ServiceApp(plugins_dir(args), output=output, cache_dir=args.cache_dir)
    log: Optional[EventLog] = None
    metrics = None
    try:
        if args.events_log is not None:
            log = EventLog(args.events_log, max_bytes=args.events_log_max_bytes)
            app.events.subscribe(log)
        if args.metrics is not None:
            metrics, _ = start_metrics_server(app, *args.metrics)
        server = Server(app, socket_path, tcp=args.tcp, token=token)

        def ready() -> None:
            print("ready", flush=True)

        try:
            asyncio.run(server.run(ready))
        except OSError as e:  # the TCP port taken, a socket path too long for AF_UNIX, ...
            raise ServiceError(f"cannot serve: {e}") from e
    finally:
        app.close()
        if metrics is not None:
            metrics.shutdown()
            metrics.server_close()
        if log is not None:
            log.close()
    print("stopped", file=sys.stderr)
    return 0
