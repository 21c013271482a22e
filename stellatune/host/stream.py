"""host-stream: byte streams the host opens for a plugin (file, http, tcp), subject to its grants.

The records mirror WIT ``host-stream`` one to one. A :class:`HostStream` is a plain Python
object with its own lock, bound to no wasm store, so a source plugin's *passthrough* stream can
move from the source's resource table to a decoder's as is.

Read semantics, per kind:

- ``file``: ``read(n)`` fills up to ``n`` bytes and is short only at end of file.
- ``http``: ``read(n)`` blocks until ``n`` bytes or end of body (as the original host did).
- ``tcp``: ``read(n)`` returns as soon as some bytes arrive (at most ``n``), so request/response
  protocols do not dead-lock; the request body, if any, is sent right after connecting.

Every kind returns ``b""`` at end of stream, caps one read at :data:`MAX_READ_BYTES` (a guest
cannot make the host allocate gigabytes), and raises ``invalid-arg`` after ``close``.
"""

from __future__ import annotations

import enum
import os
import select
import stat
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Optional

from . import budget
from .errors import from_os_error, invalid_arg, timeout, unsupported
from .grants import PluginHostContext
from .net import connect_tcp, socket_wait

__all__ = [
    "MAX_READ_BYTES",
    "StreamOpenKind",
    "HttpMethod",
    "SeekWhence",
    "Header",
    "OpenRequest",
    "HostStream",
    "OpenedFileStream",
    "FileStream",
    "TcpStream",
    "resolve_seek",
]

#: The most one ``read`` returns; larger requests are served short.
MAX_READ_BYTES = 16 * 1024 * 1024
DEFAULT_CONNECT_TIMEOUT_MS = 10_000
DEFAULT_READ_TIMEOUT_MS = 30_000


class StreamOpenKind(str, enum.Enum):
    FILE = "file"
    HTTP = "http"
    TCP = "tcp"
    UDP = "udp"


class HttpMethod(str, enum.Enum):
    GET = "get"
    POST = "post"
    PUT = "put"
    DELETE = "delete"
    HEAD = "head"
    PATCH = "patch"


class SeekWhence(str, enum.Enum):
    START = "start"
    CURRENT = "current"
    END = "end"


@dataclass(frozen=True)
class Header:
    name: str
    value: str


@dataclass(frozen=True)
class OpenRequest:
    """WIT ``open-request``. Timeouts are milliseconds; ``None`` takes the default
    (connect 10 s, read 30 s)."""

    kind: StreamOpenKind
    target: str
    method: Optional[HttpMethod] = None
    headers: Sequence[Header] = ()
    body: Optional[bytes] = None
    connect_timeout_ms: Optional[int] = None
    read_timeout_ms: Optional[int] = None

    def connect_timeout_s(self) -> float:
        return _timeout_s("connect-timeout-ms", self.connect_timeout_ms, DEFAULT_CONNECT_TIMEOUT_MS)

    def read_timeout_s(self) -> float:
        return _timeout_s("read-timeout-ms", self.read_timeout_ms, DEFAULT_READ_TIMEOUT_MS)


def _timeout_s(name: str, value: Optional[int], default_ms: int) -> float:
    if value is None:
        return default_ms / 1000
    if value <= 0:
        raise invalid_arg(f"{name} must be > 0, got {value}")
    return value / 1000


class HostStream:
    """Base of every stream handed to a plugin: WIT ``host-stream-handle``.

    Methods are serialised by a per-stream lock, so the stream may be used from whichever
    thread the current owner runs on.
    """

    kind: StreamOpenKind

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._closed = False

    def read(self, max_bytes: int) -> bytes:
        """Up to ``max_bytes`` bytes (see the module docstring per kind); ``b""`` at the end."""
        with self._lock:
            self._check_open()
            if max_bytes < 0:
                raise invalid_arg(f"max-bytes must be >= 0, got {max_bytes}")
            if max_bytes == 0:
                return b""
            return self._read(min(max_bytes, MAX_READ_BYTES))

    def seek(self, offset: int, whence: SeekWhence = SeekWhence.START) -> int:
        """Move the read position; returns the new absolute position."""
        with self._lock:
            self._check_open()
            return self._seek(offset, SeekWhence(whence))

    def tell(self) -> int:
        with self._lock:
            self._check_open()
            return self._tell()

    def size(self) -> int:
        """Total length in bytes, or ``unsupported`` when the stream cannot know it."""
        with self._lock:
            self._check_open()
            return self._size()

    def close(self) -> None:
        """Release the stream; idempotent."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._close()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> HostStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise invalid_arg(f"{self.kind.value} stream is closed")

    # Subclasses implement these, called with the lock held and the stream open.
    def _read(self, n: int) -> bytes:
        raise NotImplementedError

    def _seek(self, offset: int, whence: SeekWhence) -> int:
        raise unsupported(f"{self.kind.value} streams cannot seek")

    def _tell(self) -> int:
        raise unsupported(f"{self.kind.value} streams have no position")

    def _size(self) -> int:
        raise unsupported(f"{self.kind.value} streams have no size")

    def _close(self) -> None:
        raise NotImplementedError


def resolve_seek(offset: int, whence: SeekWhence, position: int, size: Optional[int]) -> int:
    """The absolute position a seek lands on; ``invalid-arg`` when it would be negative."""
    if whence is SeekWhence.START:
        target = offset
    elif whence is SeekWhence.CURRENT:
        target = position + offset
    else:
        if size is None:
            raise unsupported("seek from the end needs a known size")
        target = size + offset
    if target < 0:
        raise invalid_arg(f"seek to a negative position ({target})")
    return target


class OpenedFileStream(HostStream):
    """A stream over a regular file already opened read-only; how it was chosen is the
    subclass's business (a plugin's granted path, or a track the host picked)."""

    kind = StreamOpenKind.FILE

    def __init__(self, file: BinaryIO, path: Path, display: str = "file"):
        super().__init__()
        self._file = file
        self.path = path
        self._display = display
        """How errors name the file: what the plugin asked for, never the host's path."""

    def _read(self, n: int) -> bytes:
        try:
            return self._file.read(n)  # buffered: fills n unless EOF
        except OSError as exc:
            raise from_os_error(f"read {self._display}", exc) from None

    def _seek(self, offset: int, whence: SeekWhence) -> int:
        target = resolve_seek(offset, whence, self._file.tell(), self._size())
        return self._file.seek(target)

    def _tell(self) -> int:
        return self._file.tell()

    def _size(self) -> int:
        return os.fstat(self._file.fileno()).st_size

    def _close(self) -> None:
        self._file.close()


class FileStream(OpenedFileStream):
    """A regular file inside a granted root, opened read-only."""

    def __init__(self, ctx: PluginHostContext, target: str):
        path = ctx.grants.check_file(target)
        try:
            # O_NONBLOCK so that a FIFO or device never blocks the open; only regular files pass.
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            raise from_os_error(f"open {target!r}", exc) from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise invalid_arg(f"{target!r} is not a regular file")
            # The path was checked before the open; re-check what was really opened, so a
            # symlink swapped in between cannot smuggle in a file outside the roots.
            if not ctx.grants.file_allowed(os.readlink(f"/proc/self/fd/{fd}")):
                raise ctx.grants.file_denied(target.strip())
            os.set_blocking(fd, True)
            file = os.fdopen(fd, "rb")
        except BaseException:
            os.close(fd)
            raise
        super().__init__(file, path, f"file {target.strip()!r}")


class TcpStream(HostStream):
    """A TCP connection to an endpoint listed in ``permissions.tcp``; read-only after the
    optional request body is sent. ``tell`` counts bytes read; seek and size are unsupported."""

    kind = StreamOpenKind.TCP

    def __init__(self, ctx: PluginHostContext, request: OpenRequest):
        super().__init__()
        host, port = ctx.grants.check_tcp(request.target)
        self.endpoint = f"{host}:{port}"
        self._position = 0
        self._read_s = request.read_timeout_s()
        self._sock = connect_tcp(host, port, request.connect_timeout_s(), f"connect to tcp {self.endpoint}")
        try:
            if request.body:
                with socket_wait(self._sock, self._read_s, f"send to tcp {self.endpoint}"):
                    self._sock.sendall(request.body)
        except OSError as exc:
            self._sock.close()
            budget.check(f"send to tcp {self.endpoint}")  # a cancelled call shut the socket down
            raise from_os_error(f"send to tcp {self.endpoint}", exc) from None
        except BaseException:
            self._sock.close()
            raise

    def _read(self, n: int) -> bytes:
        # poll first (cut to the call's budget, woken by its cancel); recv then never blocks.
        what = f"read from tcp {self.endpoint}"
        if not budget.wait_fds(what, [(self._sock.fileno(), select.POLLIN)], self._read_s):
            raise timeout(f"no data from tcp {self.endpoint} within the read timeout")
        try:
            data = self._sock.recv(n)
        except OSError as exc:
            raise from_os_error(what, exc) from None
        self._position += len(data)
        return data

    def _tell(self) -> int:
        return self._position

    def _close(self) -> None:
        self._sock.close()
