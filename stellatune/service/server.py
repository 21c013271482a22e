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
import stat
import time
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
    quote,
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
#: Bytes of replies and events queued for one connection, at most. A client that stops reading
#: first loses events; its requests then wait for room, and it is closed after WRITE_TIMEOUT_S.
MAX_QUEUED_BYTES = 4 << 20
WRITE_TIMEOUT_S = 30.0
#: A TCP client that has not authenticated within this is closed (a unix socket needs no token).
AUTH_TIMEOUT_S = 10.0
#: TCP clients waiting to authenticate at once, at most; more are refused on connect, so a flood
#: of clients that never send a token cannot exhaust the service's descriptors or memory.
MAX_UNAUTHENTICATED = 32
#: On shutdown: how long connections get to flush what is queued (service-stopping, replies).
FLUSH_ON_STOP_S = 1.0
READ_CHUNK = 65536


class _Conn:
    def __init__(self, server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, needs_auth: bool):
        self.server, self.reader, self.writer = server, reader, writer
        self.authed = not needs_auth
        # Unbounded in messages; bounded in bytes by send() and push_event().
        self.out: asyncio.Queue[Optional[bytes]] = asyncio.Queue()
        self.queued_bytes = 0
        self.room = asyncio.Event()  # set whenever the writer has taken something
        self.unsubscribe: Optional[Callable[[], None]] = None
        self.dropped = 0
        self.closed = False
        self.writer_task: Optional[asyncio.Task[None]] = None

    def _put(self, data: bytes) -> None:
        self.queued_bytes += len(data)
        self.out.put_nowait(data)

    async def send(self, message: dict[str, Any]) -> None:
        """Queue a reply; wait (not the service's memory) while the client is not reading, and
        close the connection when it has not read for WRITE_TIMEOUT_S."""
        data = encode(message)
        deadline = time.monotonic() + WRITE_TIMEOUT_S
        while not self.closed and self.queued_bytes and self.queued_bytes + len(data) > MAX_QUEUED_BYTES:
            self.room.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                self.close()
                return
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.room.wait(), left)
        if not self.closed:
            self._put(data)

    def push_event(self, event: dict[str, Any]) -> None:
        if self.closed:
            return
        data = encode(notification("event", event))
        if self.queued_bytes + len(data) > MAX_QUEUED_BYTES:
            self.dropped += 1  # a slow reader loses events, never the service's memory
            return
        self._flush_dropped()
        self._put(data)

    def _flush_dropped(self) -> None:
        """Tell the client how many events it lost, as soon as there is room for it."""
        if self.dropped and not self.closed:
            self._put(encode(notification("event", _dropped(self.dropped))))
            self.dropped = 0

    async def write_loop(self) -> None:
        try:
            while True:
                data = await self.out.get()
                if data is None:
                    break
                self.queued_bytes -= len(data)
                self.writer.write(data)
                await asyncio.wait_for(self.writer.drain(), WRITE_TIMEOUT_S)
                self.room.set()
                if self.dropped and self.queued_bytes < MAX_QUEUED_BYTES // 2:
                    self._flush_dropped()  # the loss is told even if no other event follows
        except (TimeoutError, ConnectionError, OSError):
            pass
        finally:
            self.closed = True
            self.room.set()  # a send() waiting for room sees the connection closed
            self.writer.close()

    def finish(self) -> None:
        """Stop reading and taking events; the writer flushes what is queued, then closes."""
        self.closed = True
        if self.unsubscribe is not None:
            self.unsubscribe()
            self.unsubscribe = None
        self.out.put_nowait(None)

    def close(self) -> None:
        """Close now, whatever is still queued."""
        self.finish()
        self.room.set()
        self.writer.close()


def _dropped(n: int) -> dict[str, Any]:
    return {
        "ts": time.time(),
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
        claim_socket_path(self.socket_path)
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
            await asyncio.sleep(0)  # its deliveries (call_soon_threadsafe) queue it on each connection
        finally:
            for s in servers:
                s.close()
            # Let subscribers have service-stopping (and callers their last replies), briefly.
            conns = list(self._conns)
            for conn in conns:
                conn.finish()
            tasks = [c.writer_task for c in conns if c.writer_task is not None]
            if tasks:
                await asyncio.wait(tasks, timeout=FLUSH_ON_STOP_S)
            for conn in conns:
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
        if sum(1 for c in self._conns if not c.authed) >= MAX_UNAUTHENTICATED:
            refusal = reject(
                ErrorCode.UNAUTHORIZED, f"more than {MAX_UNAUTHENTICATED} connections waiting to authenticate"
            )
            with contextlib.suppress(ConnectionError, OSError):
                writer.write(encode(error_message(None, refusal)))
                writer.close()
                await asyncio.wait_for(writer.wait_closed(), 2.0)
            return
        await self._serve(_Conn(self, reader, writer, needs_auth=True))

    async def _serve(self, conn: _Conn) -> None:
        self._conns.add(conn)
        writer_task = conn.writer_task = asyncio.create_task(conn.write_loop())
        buf = bytearray()
        discarding = False
        auth_deadline = time.monotonic() + AUTH_TIMEOUT_S
        try:
            while not conn.closed:
                if conn.authed:
                    chunk = await conn.reader.read(READ_CHUNK)
                else:  # an unauthenticated TCP client gets AUTH_TIMEOUT_S, and one line
                    left = auth_deadline - time.monotonic()
                    if left <= 0:
                        break
                    try:
                        chunk = await asyncio.wait_for(conn.reader.read(READ_CHUNK), left)
                    except TimeoutError:
                        break
                if not chunk:
                    if buf.strip() and not discarding and len(buf) <= MAX_MESSAGE_BYTES:
                        await self._handle(conn, bytes(buf))  # a last line without its newline
                    break
                buf += chunk
                while not conn.closed:
                    nl = buf.find(b"\n")
                    if nl < 0:
                        if len(buf) > MAX_MESSAGE_BYTES and not discarding:
                            discarding = True
                            await conn.send(_too_large())
                            if not conn.authed:
                                conn.finish()
                        if discarding:
                            buf.clear()
                        break
                    line, buf = bytes(buf[:nl]), buf[nl + 1 :]
                    if discarding:
                        discarding = False  # the rest of the oversized line
                        continue
                    if len(line) > MAX_MESSAGE_BYTES:
                        await conn.send(_too_large())
                        if not conn.authed:
                            conn.finish()
                        continue
                    if line.strip():
                        await self._handle(conn, line)
        except (ConnectionError, OSError):
            pass
        except Exception:  # noqa: BLE001 (one connection's failure never stops the service)
            _log.exception("connection handler failed")
        finally:
            conn.finish()
            self._conns.discard(conn)
            with contextlib.suppress(asyncio.TimeoutError, Exception):
                await asyncio.wait_for(writer_task, 2.0)
            conn.close()

    async def _handle(self, conn: _Conn, line: bytes) -> None:
        rid: Any = None
        notify = False
        try:
            req = parse_request(line)
            if not isinstance(req, Request):  # {"auth": TOKEN}
                await self._auth(conn, req)
                return
            rid, notify = req.id, req.notify
            if not conn.authed:
                raise reject(ErrorCode.UNAUTHORIZED, 'authenticate first: {"auth": TOKEN}')
            result = await self._dispatch(conn, req)
            if not notify:
                await conn.send(result_message(rid, result))
        except Exception as exc:  # noqa: BLE001 (every failure becomes an error reply)
            err = rpc_error_of(exc, action=None)
            if err.failure.code is ErrorCode.INTERNAL:
                _log.exception("method failed")
            if err.request_id is not None:
                rid = err.request_id  # the request was read that far
            if not (notify or err.notify):  # JSON-RPC: a notification is never answered
                await conn.send(error_message(rid, err))
            if not conn.authed:
                conn.finish()  # the error goes out, then the connection closes

    async def _auth(self, conn: _Conn, doc: dict[str, Any]) -> None:
        token = doc.get("auth")
        # As UTF-8 bytes: compare_digest refuses str that is not ASCII (surrogates: escaped).
        if self.token is None or (
            isinstance(token, str)
            and hmac.compare_digest(token.encode("utf-8", "backslashreplace"), self.token.encode("utf-8"))
        ):
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
            raise reject(ErrorCode.METHOD_NOT_FOUND, f"no such method: {quote(req.method)}")
        check_params(req.method, method.params, req.params)
        pool = self._reads if req.method in READ_METHODS else self._control
        try:
            return await self._loop.run_in_executor(pool, method.fn, self.app, req.params)
        except (TypeError, ValueError, OverflowError, IndexError, KeyError) as exc:
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


def claim_socket_path(path: Path) -> None:
    """Remove a stale socket file; refuse to take over one a live service answers on, and any
    path that is not a socket (a file given by mistake is never deleted)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise OSError(f"{path} exists and is not a socket: refusing to replace it")
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
