"""Channels to a sidecar, and the endpoints the host creates for them before launch.

Who listens: **the host**. Before spawning, the host creates each endpoint the launch spec
asks for inside a private directory (mode 0700) and names it in the child's environment:

============================ ===================================== ==============================
transport                    endpoint the host creates             env value
============================ ===================================== ==============================
``unix-socket``              listening socket ``<name>.sock``      the socket path
``loopback-tcp``             listening socket on 127.0.0.1:<free>  ``127.0.0.1:<port>``
``named-pipe``               two FIFOs                             ``tx=<host→sidecar>;rx=<...>``
``shared-memory-ring``       two STMR rings (+ ``.bell`` FIFOs)    ``tx=<host→sidecar>;rx=<...>``
``stdio``                    the child's stdin/stdout              ``stdio``
============================ ===================================== ==============================

The sidecar connects (sockets) or opens (FIFOs, rings). With FIFOs the sidecar must open
``rx`` for writing *before* it opens ``tx`` for reading: the host's connect completes when
``tx`` has a reader, and by then its reads must not see a FIFO without a writer (which reads
as end of stream). So a plugin can never make the host
connect to an arbitrary socket on the machine; it only reaches endpoints the host made for it.

Every ``read`` honours its timeout (``poll`` on the fd, or the ring's doorbell) and raises
``timeout`` when it ends; ``b""`` means end of stream. Inside a plugin call every wait (reads,
writes, connects) is also cut to the call's remaining budget and woken by its cancel
(``stellatune.host.budget``). ``write`` sends everything within
:data:`WRITE_TIMEOUT_S`, except on a ring, where it is non-blocking and may be partial (as in
the original: the ring has no space wake-up).
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Optional

from ...errors import PluginError
from .. import budget
from ..errors import invalid_arg, io_error, os_reason, timeout, unsupported
from .shm_ring import RingFormatError, ShmRing, clamp_capacity
from .spec import TransportKind

__all__ = ["Channel", "Endpoint", "create_endpoint", "WRITE_TIMEOUT_S", "MAX_CHANNEL_READ"]

WRITE_TIMEOUT_S = 30.0
BUSY_EXIT_WAIT_S = 0.25
MAX_CHANNEL_READ = 16 * 1024 * 1024


def _wait_fd(fd: int, events: int, timeout_s: Optional[float], what: str = "sidecar") -> bool:
    """``poll`` one fd; ``False`` on timeout. ``None`` waits forever. Inside a plugin call the
    wait is cut to the call's budget and ends with ``timeout`` when that runs out or is cancelled."""
    return bool(budget.wait_fds(what, [(fd, events)], timeout_s))


class Channel:
    """WIT ``channel``: one byte stream to a sidecar.

    ``stale`` tells whether the process generation this channel was opened on is gone (the
    sidecar was restarted); a stale channel refuses I/O with ``io`` so the plugin reopens it.
    """

    def __init__(self, kind: TransportKind, describe: str, is_stale: Callable[[], bool], on_close: Callable[[], None]):
        self._kind = kind
        self._describe = describe
        self._is_stale = is_stale
        self._on_close = on_close
        self._read_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._closed = False

    def transport(self) -> TransportKind:
        return self._kind

    def write(self, data: bytes) -> int:
        """Send ``data``; returns the number of bytes taken (all of it, except on a ring)."""
        with self._write_lock:
            self._check()
            return self._write(bytes(data))

    def read(self, max_bytes: int, timeout_ms: Optional[int] = None) -> bytes:
        """Up to ``max_bytes`` bytes as soon as any arrive; ``b""`` at end of stream;
        ``timeout`` if nothing arrives within ``timeout_ms`` (``None``: wait)."""
        if max_bytes < 0 or (timeout_ms is not None and timeout_ms < 0):
            raise invalid_arg("max-bytes and timeout-ms must be >= 0")
        with self._read_lock:
            self._check()
            if max_bytes == 0:
                return b""
            data = self._read(min(max_bytes, MAX_CHANNEL_READ), None if timeout_ms is None else timeout_ms / 1000)
            if data is None:
                raise timeout(f"{self._describe}: no data within {timeout_ms} ms")
            return data

    def close(self) -> None:
        """Release the channel; idempotent."""
        with self._write_lock:
            if self._closed:
                return
            self._closed = True
        self._close()
        self._on_close()

    @property
    def closed(self) -> bool:
        return self._closed

    def _check(self) -> None:
        # Staleness first: a channel the host closed at teardown should say why.
        if self._is_stale():
            raise io_error(f"{self._describe}: the sidecar was restarted or stopped; open the channel again")
        if self._closed:
            raise invalid_arg(f"{self._describe}: channel is closed")

    def _io_error(self, what: str, exc: OSError) -> PluginError:
        return io_error(f"{self._describe}: {what}: {os_reason(exc)}")

    # Implemented per transport; _read returns None on timeout.
    def _write(self, data: bytes) -> int:
        raise NotImplementedError

    def _read(self, n: int, timeout_s: Optional[float]) -> Optional[bytes]:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError


class FdChannel(Channel):
    """A pair of pipe fds: stdio (the child's stdout/stdin) or a FIFO pair."""

    def __init__(
        self, kind: TransportKind, describe: str, read_fd: int, write_fd: int, *, owns_fds: bool, **hooks: Callable
    ):
        super().__init__(kind, describe, **hooks)
        self._rfd, self._wfd, self._owns = read_fd, write_fd, owns_fds
        os.set_blocking(read_fd, False)
        os.set_blocking(write_fd, False)

    def _read(self, n: int, timeout_s: Optional[float]) -> Optional[bytes]:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            try:
                return os.read(self._rfd, n)
            except BlockingIOError:
                pass
            except OSError as exc:
                raise self._io_error("read", exc) from None
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return None
            _wait_fd(self._rfd, select.POLLIN, left, self._describe)

    def _write(self, data: bytes) -> int:
        view, deadline = memoryview(data), time.monotonic() + WRITE_TIMEOUT_S
        while view:
            try:
                view = view[os.write(self._wfd, view) :]
                continue
            except BlockingIOError:
                pass
            except OSError as exc:  # EPIPE: the sidecar closed its end or died
                raise self._io_error("write", exc) from None
            left = deadline - time.monotonic()
            if left <= 0 or not _wait_fd(self._wfd, select.POLLOUT, left, self._describe):
                raise timeout(f"{self._describe}: the sidecar read nothing for {WRITE_TIMEOUT_S:g} s")
        return len(data)

    def _close(self) -> None:
        if self._owns:
            os.close(self._rfd)
            os.close(self._wfd)


class SocketChannel(Channel):
    """An accepted unix or loopback-TCP connection, non-blocking: every wait is a ``poll``, so
    it can be cut to the calling plugin call's budget."""

    def __init__(self, kind: TransportKind, describe: str, sock: socket.socket, **hooks: Callable):
        super().__init__(kind, describe, **hooks)
        self._sock = sock
        sock.setblocking(False)

    def _read(self, n: int, timeout_s: Optional[float]) -> Optional[bytes]:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            try:
                return self._sock.recv(n)
            except BlockingIOError:
                pass
            except OSError as exc:
                raise self._io_error("read", exc) from None
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return None
            _wait_fd(self._sock.fileno(), select.POLLIN, left, self._describe)

    def _write(self, data: bytes) -> int:
        view, deadline = memoryview(data), time.monotonic() + WRITE_TIMEOUT_S
        while view:
            try:
                view = view[self._sock.send(view) :]
                continue
            except BlockingIOError:
                pass
            except OSError as exc:
                raise self._io_error("write", exc) from None
            left = deadline - time.monotonic()
            if left <= 0 or not _wait_fd(self._sock.fileno(), select.POLLOUT, left, self._describe):
                raise timeout(f"{self._describe}: the sidecar read nothing for {WRITE_TIMEOUT_S:g} s")
        return len(data)

    def _close(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()


class RingChannel(Channel):
    """A pair of shared-memory rings; ``exit_fd`` (a pidfd) ends a wait when the sidecar dies."""

    def __init__(self, describe: str, tx: ShmRing, rx: ShmRing, exit_fd: int, **hooks: Callable):
        super().__init__(TransportKind.SHARED_MEMORY_RING, describe, **hooks)
        self._tx, self._rx, self._exit_fd = tx, rx, exit_fd

    def _read(self, n: int, timeout_s: Optional[float]) -> Optional[bytes]:
        wait_s = budget.allowed_wait(self._describe, timeout_s)
        outcome = self._rx.wait_readable(wait_s, extra_fd=self._exit_fd, wake_fd=budget.wake_fd())
        if outcome in ("wake", "timeout"):
            budget.check(self._describe)  # the call's budget, not the plugin's timeout, ended it
        if outcome == "data":
            return self._rx.read(n)
        return None if outcome == "timeout" else b""  # hangup, or the sidecar exited

    def _write(self, data: bytes) -> int:
        return self._tx.write(data)

    def _close(self) -> None:
        self._tx.close()
        self._rx.close()
        os.close(self._exit_fd)


class Endpoint:
    """One endpoint of one process generation, for one logical channel (``control``,
    ``data`` or ``data-<role>``) and one transport kind. At most one open channel at a time."""

    def __init__(self, kind: TransportKind, name: str, env_value: str):
        self.kind = kind
        self.name = name
        self.env_value = env_value
        self._busy = False
        self._lock = threading.Lock()

    def connect(self, timeout_s: float, *, is_stale: Callable[[], bool], exit_fd: int) -> Channel:
        """Open a channel on this endpoint, waiting up to ``timeout_s`` for the sidecar."""
        with self._lock:
            busy, self._busy = self._busy, True
        if busy:
            # Usually the plugin reopening right after its sidecar died, before the exit is
            # visible: give the exit a moment to show, so the caller can move to the restart.
            if _wait_fd(exit_fd, select.POLLIN, BUSY_EXIT_WAIT_S, f"sidecar {self.name}"):
                raise io_error(f"sidecar {self.name}: the sidecar exited")
            raise invalid_arg(f"{self.kind.value} {self.name} channel is already open; close it first")
        try:
            return self._connect(timeout_s, f"sidecar {self.name} over {self.kind.value}", is_stale, exit_fd)
        except BaseException:
            self._release()
            raise

    def _release(self) -> None:
        with self._lock:
            self._busy = False

    def _connect(self, timeout_s: float, describe: str, is_stale: Callable[[], bool], exit_fd: int) -> Channel:
        raise NotImplementedError

    def close(self) -> None:
        """Stop listening (files are removed with the generation's directory)."""


class _ListeningEndpoint(Endpoint):
    def __init__(self, kind: TransportKind, name: str, sock: socket.socket, env_value: str):
        super().__init__(kind, name, env_value)
        self._listener = sock

    def connect(self, timeout_s: float, *, is_stale: Callable[[], bool], exit_fd: int) -> Channel:
        # A listening socket serves any number of channels: each open accepts one connection.
        describe = f"sidecar {self.name} over {self.kind.value}"
        ready = budget.wait_fds(
            describe, [(self._listener.fileno(), select.POLLIN), (exit_fd, select.POLLIN)], timeout_s
        )
        if self._listener.fileno() not in ready:
            if exit_fd in ready:
                raise io_error(f"{describe}: the sidecar exited before connecting")
            raise timeout(f"{describe}: the sidecar did not connect within {timeout_s:g} s")
        try:
            conn, _ = self._listener.accept()
        except OSError as exc:
            raise io_error(f"{describe}: accept: {os_reason(exc)}") from None
        conn.setblocking(True)
        return SocketChannel(self.kind, describe, conn, is_stale=is_stale, on_close=lambda: None)

    def close(self) -> None:
        self._listener.close()


class _FifoEndpoint(Endpoint):
    def __init__(self, name: str, tx: Path, rx: Path):
        super().__init__(TransportKind.NAMED_PIPE, name, f"tx={tx};rx={rx}")
        self._tx, self._rx = tx, rx

    def _connect(self, timeout_s, describe, is_stale, exit_fd):
        rfd = os.open(self._rx, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # never blocks
        deadline = time.monotonic() + timeout_s
        while True:
            try:  # fails with ENXIO until the sidecar has opened its reading end
                wfd = os.open(self._tx, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
                break
            except OSError as exc:
                if exc.errno != errno.ENXIO or time.monotonic() >= deadline:
                    os.close(rfd)
                    if exc.errno == errno.ENXIO:
                        raise timeout(f"{describe}: the sidecar did not open its pipe within {timeout_s:g} s") from None
                    raise io_error(f"{describe}: open: {exc.strerror}") from None
            # The sidecar opens its end right after start-up; a short nap while connecting
            # costs nothing (FIFOs offer no readiness event for "a reader appeared").
            try:
                exited = _wait_fd(exit_fd, select.POLLIN, 0.005, describe)
            except PluginError:  # the call's budget ended or was cancelled
                os.close(rfd)
                raise
            if exited:
                os.close(rfd)
                raise io_error(f"{describe}: the sidecar exited before opening its pipe")
        return FdChannel(self.kind, describe, rfd, wfd, owns_fds=True, is_stale=is_stale, on_close=self._release)


class _RingEndpoint(Endpoint):
    def __init__(self, name: str, tx: Path, rx: Path):
        super().__init__(TransportKind.SHARED_MEMORY_RING, name, f"tx={tx};rx={rx}")
        self._tx, self._rx = tx, rx

    def _connect(self, timeout_s, describe, is_stale, exit_fd):
        with contextlib.ExitStack() as undo:  # a ring opened before a failure is unmapped again
            try:
                tx = ShmRing(self._tx, writer=True)
                undo.callback(tx.close)
                rx = ShmRing(self._rx, writer=False)
                undo.callback(rx.close)
            except RingFormatError as exc:  # the sidecar shares these files and can spoil them
                raise io_error(f"{describe}: {exc}") from None
            channel = RingChannel(describe, tx, rx, os.dup(exit_fd), is_stale=is_stale, on_close=self._release)
            undo.pop_all()
        return channel


class _StdioEndpoint(Endpoint):
    def __init__(self, name: str, stdout_fd: int, stdin_fd: int):
        super().__init__(TransportKind.STDIO, name, "stdio")
        self._fds = (stdout_fd, stdin_fd)

    def connect(self, timeout_s: float, *, is_stale: Callable[[], bool], exit_fd: int) -> Channel:
        # Every stdio channel of a process shares its pipes (as in the original): no busy flag,
        # and closing a channel leaves the pipes to the process. A hung-up stdout with nothing
        # left to read is a process on its way out: let the exit show so the caller can move
        # to the restarted process instead of getting a channel that is dead already.
        poller = select.poll()
        poller.register(self._fds[0], select.POLLIN)
        for _fd, mask in poller.poll(0):
            if (
                mask & select.POLLHUP
                and not mask & select.POLLIN
                and _wait_fd(exit_fd, select.POLLIN, BUSY_EXIT_WAIT_S, f"sidecar {self.name}")
            ):
                raise io_error(f"sidecar {self.name}: the sidecar exited")
        return FdChannel(
            self.kind,
            f"sidecar {self.name} over stdio",
            *self._fds,
            owns_fds=False,
            is_stale=is_stale,
            on_close=lambda: None,
        )


def create_endpoint(
    kind: TransportKind,
    name: str,
    directory: Path,
    *,
    stem: str = "",
    max_frame_bytes: Optional[int] = None,
    stdio_fds: Optional[tuple[int, int]] = None,
) -> Endpoint:
    """Create the endpoint for ``kind`` in ``directory``; its files are named after ``stem``
    (short: a unix socket path must fit 107 bytes). Stdio needs the process's fds, so it is
    made after spawning, from ``stdio_fds`` = (stdout, stdin)."""
    stem = stem or name
    if kind is TransportKind.STDIO:
        if stdio_fds is None:
            raise unsupported("stdio is not a channel of this sidecar: its stdout goes to the log")
        return _StdioEndpoint(name, *stdio_fds)
    if kind is TransportKind.UNIX_SOCKET:
        path = directory / f"{stem}.sock"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(path))
        sock.listen(4)
        return _ListeningEndpoint(kind, name, sock, str(path))
    if kind is TransportKind.LOOPBACK_TCP:
        sock = socket.create_server(("127.0.0.1", 0), backlog=4)
        return _ListeningEndpoint(kind, name, sock, f"127.0.0.1:{sock.getsockname()[1]}")
    if kind is TransportKind.NAMED_PIPE:
        tx, rx = directory / f"{stem}-tx.fifo", directory / f"{stem}-rx.fifo"
        os.mkfifo(tx, 0o600)
        os.mkfifo(rx, 0o600)
        return _FifoEndpoint(name, tx, rx)
    if kind is TransportKind.SHARED_MEMORY_RING:
        tx, rx = directory / f"{stem}-tx.shm", directory / f"{stem}-rx.shm"
        capacity = clamp_capacity(max_frame_bytes)
        ShmRing.create(tx, capacity)
        ShmRing.create(rx, capacity)
        return _RingEndpoint(name, tx, rx)
    raise unsupported(f"unknown transport {kind!r}")
