"""The asyncio server of ``stellatune serve``: connections, framing, dispatch, subscriptions.

One event-loop thread reads and writes every connection; method calls run on worker threads
(one serial "control" worker for anything that changes state, a few for reads), so a slow plugin
call never stalls other clients and the audio thread (C) is never involved.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import signal
import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Optional

from ..events import EVENT_KINDS
from ..taxonomy import ErrorCode
from .app import ServiceApp
from .methods import METHODS, SERVER_METHODS, check_params
from .protocol import (
    MAX_MESSAGE_BYTES,
    Request,
    encode,
    error_message,
    notification,
    parse_request,
    reject,
    result_message,
    rpc_error_of,
)

__all__ = ["Server"]

_log = logging.getLogger("stellatune.service")

#: Methods that only read: they run on the read pool, next to a busy control worker.
READ_METHODS = frozenset(
    {"player.status", "chain.get", "plugins.list", "plugins.info", "runtime.status", "metrics.get"}
)
OUT_QUEUE = 1024
WRITE_TIMEOUT_S = 30.0
READ_CHUNK = 65536


class _Conn:
    def __init__(self, server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, needs_auth: bool):
        self.server, self.reader, self.writer = server, reader, writer
        self.authed = not needs_auth
        self.out: asyncio.Queue[Optional[bytes]] = asyncio.Queue(maxsize=OUT_QUEUE)
        self.unsubscribe: Optional[Callable[[], None]] = None
        self.dropped = 0
        self.closed = False

    async def send(self, message: dict[str, Any]) -> None:
        if not self.closed:
            await self.out.put(encode(message))

    def push_event(self, event: dict[str, Any]) -> None:
        if self.closed:
            return
        try:
            if self.dropped:
                self.out.put_nowait(encode(notification("event", _dropped(self.dropped, event))))
                self.dropped = 0
            self.out.put_nowait(encode(notification("event", event)))
        except asyncio.QueueFull:
            self.dropped += 1  # a slow reader loses events, never the service's memory
        except (TypeError, ValueError):
            _log.exception("event not JSON-able: %s", event.get("kind"))

    async def write_loop(self) -> None:
        try:
            while True:
                data = await self.out.get()
                if data is None:
                    break
                self.writer.write(data)
                await asyncio.wait_for(self.writer.drain(), WRITE_TIMEOUT_S)
        except (TimeoutError, ConnectionError, OSError):
            pass
        finally:
            self.closed = True
            self.writer.close()

    def finish(self) -> None:
        """Stop reading; the writer flushes what is queued, then closes."""
        self.closed = True
        with contextlib.suppress(asyncio.QueueFull):
            self.out.put_nowait(None)

    def close(self) -> None:
        self.closed = True
        if self.unsubscribe is not None:
            self.unsubscribe()
            self.unsubscribe = None
        with contextlib.suppress(asyncio.QueueFull):
            self.out.put_nowait(None)
        self.writer.close()


def _dropped(n: int, event: dict[str, Any]) -> dict[str, Any]:
    return {
        "ts": event["ts"],
        "seq": 0,
        "kind": "events-dropped",
        "severity": "warning",
        "plugin_id": None,
        "data": {"count": n},
    }


class Server:
    """Serves ``app`` on a unix socket (and optionally loopback TCP with a token)."""

    def __init__(
        self,
        app: ServiceApp,
        socket_path: Path,
        *,
        tcp: Optional[tuple[str, int]] = None,
        token: Optional[str] = None,
    ):
        if tcp is not None and not token:
            raise ValueError("--tcp needs a token (--token-file)")
        self.app, self.socket_path, self.tcp, self.token = app, Path(socket_path), tcp, token
        self._control = ThreadPoolExecutor(1, thread_name_prefix="stellatune-rpc-control")
        self._reads = ThreadPoolExecutor(4, thread_name_prefix="stellatune-rpc-read")
        self._conns: set[_Conn] = set()
        self._stop: Optional[asyncio.Event] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self.tcp_port: Optional[int] = None

    # --- lifetime -------------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Thread-safe: ask the server to stop."""
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            loop.call_soon_threadsafe(stop.set)

    async def run(self, on_ready: Callable[[], None] = lambda: None) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        _claim_socket_path(self.socket_path)
        old = os.umask(0o177)
        try:
            unix = await asyncio.start_unix_server(self._on_unix, path=str(self.socket_path), limit=READ_CHUNK)
        finally:
            os.umask(old)
        os.chmod(self.socket_path, 0o600)
        servers: list[asyncio.base_events.Server] = [unix]
        try:
            if self.tcp is not None:
                tcp = await asyncio.start_server(self._on_tcp, self.tcp[0], self.tcp[1], limit=READ_CHUNK)
                self.tcp_port = tcp.sockets[0].getsockname()[1]
                servers.append(tcp)
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    self._loop.add_signal_handler(sig, self._stop.set)
            self.app.events.emit("service-started", socket=str(self.socket_path), tcp_port=self.tcp_port)
            on_ready()
            await self._stop.wait()
            self.app.events.emit("service-stopping")
        finally:
            for s in servers:
                s.close()
            for conn in list(self._conns):
                conn.close()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.gather(*(s.wait_closed() for s in servers)), 5.0)
            with contextlib.suppress(OSError):
                self.socket_path.unlink()
            await self._loop.run_in_executor(None, self._close_app)

    def _close_app(self) -> None:
        try:
            self.app.close()
        finally:
            self._control.shutdown(wait=False, cancel_futures=True)
            self._reads.shutdown(wait=False, cancel_futures=True)

    # --- connections ----------------------------------------------------------------------------

    async def _on_unix(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._serve(_Conn(self, reader, writer, needs_auth=False))

    async def _on_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._serve(_Conn(self, reader, writer, needs_auth=True))

    async def _serve(self, conn: _Conn) -> None:
        self._conns.add(conn)
        writer_task = asyncio.create_task(conn.write_loop())
        buf = bytearray()
        discarding = False
        try:
            while not conn.closed:
                chunk = await conn.reader.read(READ_CHUNK)
                if not chunk:
                    break
                buf += chunk
                while not conn.closed:
                    nl = buf.find(b"\n")
                    if nl < 0:
                        if len(buf) > MAX_MESSAGE_BYTES and not discarding:
                            discarding = True
                            await conn.send(_too_large())
                        if discarding:
                            buf.clear()
                        break
                    line, buf = bytes(buf[:nl]), buf[nl + 1 :]
                    if discarding:
                        discarding = False  # the rest of the oversized line
                        continue
                    if len(line) > MAX_MESSAGE_BYTES:
                        await conn.send(_too_large())
                        continue
                    if line.strip():
                        await self._handle(conn, line)
        except (ConnectionError, OSError):
            pass
        except Exception:  # noqa: BLE001 (one connection's failure never stops the service)
            _log.exception("connection handler failed")
        finally:
            if conn.unsubscribe is not None:
                conn.unsubscribe()
                conn.unsubscribe = None
            conn.finish()
            self._conns.discard(conn)
            with contextlib.suppress(asyncio.TimeoutError, Exception):
                await asyncio.wait_for(writer_task, 2.0)
            conn.close()

    async def _handle(self, conn: _Conn, line: bytes) -> None:
        rid: Any = None
        try:
            req = parse_request(line)
            if not isinstance(req, Request):  # {"auth": TOKEN}
                await self._auth(conn, req)
                return
            rid = req.id
            if not conn.authed:
                raise reject(ErrorCode.UNAUTHORIZED, 'authenticate first: {"auth": TOKEN}')
            result = await self._dispatch(conn, req)
            if not req.notify:
                await conn.send(result_message(rid, result))
        except Exception as exc:  # noqa: BLE001 (every failure becomes an error reply)
            err = rpc_error_of(exc, action=None)
            if err.failure.code is ErrorCode.INTERNAL:
                _log.exception("method failed")
            await conn.send(error_message(rid, err))
            if not conn.authed:
                conn.finish()  # the error goes out, then the connection closes

    async def _auth(self, conn: _Conn, doc: dict[str, Any]) -> None:
        token = doc.get("auth")
        if self.token is None or (isinstance(token, str) and hmac.compare_digest(token, self.token)):
            conn.authed = True
            await conn.send(result_message(None, {"authenticated": True}))
            return
        raise reject(ErrorCode.UNAUTHORIZED, "wrong token")

    async def _dispatch(self, conn: _Conn, req: Request) -> Any:
        assert self._loop is not None
        if req.method in SERVER_METHODS:
            check_params(req.method, SERVER_METHODS[req.method], req.params)
            return self._server_method(conn, req)
        method = METHODS.get(req.method)
        if method is None:
            raise reject(ErrorCode.METHOD_NOT_FOUND, f"no such method: {req.method}")
        check_params(req.method, method.params, req.params)
        pool = self._reads if req.method in READ_METHODS else self._control
        try:
            return await self._loop.run_in_executor(pool, method.fn, self.app, req.params)
        except (TypeError, ValueError, IndexError, KeyError) as exc:
            # Values the checks above let through but the player refused (a bad spec, ...).
            raise reject(ErrorCode.INVALID_PARAMS, f"{req.method}: {exc}") from exc
        except Exception as exc:
            raise rpc_error_of(exc, action=req.method) from exc

    def _server_method(self, conn: _Conn, req: Request) -> Any:
        assert self._loop is not None and self._stop is not None
        if req.method == "service.ping":
            return {"pong": True}
        if req.method == "service.shutdown":
            self._loop.call_later(0.05, self._stop.set)
            return {"stopping": True}
        if req.method == "events.unsubscribe":
            if conn.unsubscribe is not None:
                conn.unsubscribe()
                conn.unsubscribe = None
            return {"subscribed": False}
        kinds = req.params.get("kinds")
        if kinds is not None:
            bad = [k for k in kinds if not isinstance(k, str) or k not in EVENT_KINDS]
            if bad:
                raise reject(ErrorCode.INVALID_PARAMS, f"unknown event kinds: {bad}; see docs/events.md")
        if conn.unsubscribe is not None:
            conn.unsubscribe()
        loop = self._loop

        def deliver(event: dict[str, Any]) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed (shutting down)
                loop.call_soon_threadsafe(conn.push_event, event)

        conn.unsubscribe = self.app.events.subscribe(deliver, kinds)
        return {
            "subscribed": True,
            "kinds": sorted(kinds) if kinds is not None else None,
            "seq": self.app.events.last_seq,
        }


def _too_large() -> dict[str, Any]:
    return error_message(
        None, reject(ErrorCode.MESSAGE_TOO_LARGE, f"message longer than {MAX_MESSAGE_BYTES} bytes refused")
    )


def _claim_socket_path(path: Path) -> None:
    """Remove a stale socket file; refuse to take over one a live service answers on."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists() and not path.is_symlink():
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(str(path))
    except OSError:
        path.unlink()
        return
    finally:
        probe.close()
    raise OSError(f"a service is already listening on {path}")
