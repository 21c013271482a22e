"""The ``http`` kind of host-stream: a response body read through a bounded read-ahead.

A worker thread pulls the body in 64 KiB chunks into a queue of at most
``read_ahead_bytes / 64 KiB`` chunks, so a slow consumer never makes the host buffer more
than that. ``read(n)`` blocks until ``n`` bytes or the end of the body; ``seek`` re-issues the
request with ``Range: bytes=N-`` and needs the server to answer 206 (otherwise ``unsupported``,
and the stream keeps its old position).
"""

from __future__ import annotations

import collections
import re
import socket
import threading
import time
from typing import Optional, Union

from ..errors import PluginError
from . import budget
from .errors import io_error, timeout, unsupported
from .grants import PluginHostContext
from .http import HttpReply, send_request
from .stream import HostStream, HttpMethod, OpenRequest, SeekWhence, StreamOpenKind, resolve_seek

__all__ = ["HttpStream", "DEFAULT_READ_AHEAD_BYTES"]

CHUNK_BYTES = 64 * 1024
DEFAULT_READ_AHEAD_BYTES = 8 * 1024 * 1024
_CONTENT_RANGE_TOTAL = re.compile(r"bytes\s+(?:\d+-\d+|\*)/(\d+)\s*$", re.IGNORECASE)
_EOF = b""


class _BodyPump:
    """Moves one response body into a bounded buffer on a worker thread.

    The buffer carries ``bytes`` chunks, then one terminal item: ``b""`` (end of body) or the
    ``PluginError`` that ended the transfer. The reader waits on a Condition, so a plugin
    call's budget can cut the wait and its cancel can wake it (``budget.condition_wait``).
    """

    def __init__(self, reply: HttpReply, max_chunks: int):
        self._reply = reply
        self._max_chunks = max(1, max_chunks)
        self._items: collections.deque[Union[bytes, Exception]] = collections.deque()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stellatune-http-read-ahead", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        terminal: Union[bytes, Exception] = _EOF
        try:
            while not self._stop.is_set():
                chunk = self._reply.response.read1(CHUNK_BYTES)
                if not chunk:
                    break
                self._put(chunk)
        except TimeoutError:
            terminal = timeout(f"http body from {self._reply.target.endpoint} stalled past the read timeout")
        except Exception as exc:  # noqa: BLE001 - any failure ends this body; the reader gets it
            terminal = io_error(f"reading http body from {self._reply.target.endpoint}: {exc}")
        self._put(terminal, terminal=True)

    @property
    def maxsize(self) -> int:
        """Chunks the read-ahead holds at most."""
        return self._max_chunks

    def qsize(self) -> int:
        """Chunks held now."""
        with self._cond:
            return len(self._items)

    def _put(self, item: Union[bytes, Exception], *, terminal: bool = False) -> None:
        """Append, waiting while the buffer is full (never for the terminal item)."""
        with self._cond:
            while not terminal and len(self._items) >= self._max_chunks and not self._stop.is_set():
                self._cond.wait()
            if not self._stop.is_set():
                self._items.append(item)
                self._cond.notify_all()

    def get(self, wait_s: float) -> Union[bytes, Exception]:
        """The next item, or a ``timeout`` error after ``wait_s``; inside a plugin call the wait
        is cut to the call's budget (and raises ``timeout`` when that ends)."""
        deadline = time.monotonic() + wait_s
        what = f"read from http {self._reply.target.endpoint}"
        with self._cond:
            while not self._items:
                left = deadline - time.monotonic()
                if left <= 0:
                    return timeout(f"no http data from {self._reply.target.endpoint} within {wait_s:g} s")
                budget.condition_wait(what, self._cond, left)
            item = self._items.popleft()
            self._cond.notify_all()  # room for the worker
            return item

    def cancel(self) -> None:
        """Stop the worker and release the connection; returns once the worker has exited."""
        self._stop.set()
        try:
            self._reply.sock.shutdown(socket.SHUT_RDWR)  # wakes a worker blocked in recv
        except OSError:
            pass
        with self._cond:
            self._items.clear()
            self._cond.notify_all()  # wakes a worker blocked on a full buffer
        self._thread.join()
        self._reply.close()


class HttpStream(HostStream):
    """An HTTP(S) response body from a host in ``permissions.http``."""

    kind = StreamOpenKind.HTTP

    def __init__(
        self, ctx: PluginHostContext, request: OpenRequest, *, read_ahead_bytes: int = DEFAULT_READ_AHEAD_BYTES
    ):
        super().__init__()
        self._ctx = ctx
        self._url = request.target.strip()
        self._method = HttpMethod(request.method or HttpMethod.GET)
        self._headers = [(h.name, h.value) for h in request.headers]
        self._body = request.body
        self._connect_s = request.connect_timeout_s()
        self._read_s = request.read_timeout_s()
        self._max_chunks = max(1, read_ahead_bytes // CHUNK_BYTES)
        self._position = 0
        self._total: Optional[int] = None
        self._leftover = b""
        self._pending_error: Optional[Exception] = None
        self._pump: Optional[_BodyPump] = self._request_from(0)

    def _request_from(self, offset: int) -> Optional[_BodyPump]:
        headers = self._headers
        if offset:
            # Our Range replaces any the plugin set: the position is ours to manage.
            headers = [h for h in headers if h[0].lower() != "range"] + [("Range", f"bytes={offset}-")]
        reply = send_request(
            self._ctx,
            self._url,
            method=self._method.value.upper(),
            headers=headers,
            body=self._body,
            connect_timeout_s=self._connect_s,
            read_timeout_s=self._read_s,
        )
        # The request's waits were cut to the calling plugin call; the body's read-ahead runs on
        # its own thread, past this call, under the stream's read timeout.
        reply.sock.settimeout(self._read_s)
        status = reply.response.status
        if offset and status != 206:
            reply.close()
            raise unsupported(f"seek needs a 206 answer to a Range request; {self._url} answered HTTP {status}")
        if not 200 <= status < 300:
            reply.close()
            raise io_error(f"{self._method.value.upper()} {self._url} answered HTTP {status} {reply.response.reason}")
        self._learn_size(reply, offset)
        if self._method is HttpMethod.HEAD:
            reply.close()
            return None
        return _BodyPump(reply, self._max_chunks)

    def _learn_size(self, reply: HttpReply, offset: int) -> None:
        content_range = reply.response.getheader("Content-Range")
        match = _CONTENT_RANGE_TOTAL.search(content_range or "")
        if match:
            self._total = int(match.group(1))
            return
        length = reply.response.getheader("Content-Length")
        if length and length.isdigit() and reply.response.status == 200:
            self._total = offset + int(length)

    def _read(self, n: int) -> bytes:
        if self._pending_error is not None:
            error, self._pending_error = self._pending_error, None
            raise error
        parts = [self._leftover]
        have = len(self._leftover)
        while have < n and self._pump is not None:
            try:
                item = self._pump.get(self._read_s + 5)  # the worker's own read timeout fires first
            except PluginError:  # the plugin call's budget ended: keep what arrived for this read
                if not have:
                    raise
                break
            if isinstance(item, Exception):
                if have:  # hand out what arrived; the error comes with the next read
                    self._pending_error = item
                    break
                raise item
            if item == _EOF:
                self._pump.cancel()
                self._pump = None
                break
            parts.append(item)
            have += len(item)
        data = b"".join(parts)
        out, self._leftover = data[:n], data[n:]
        self._position += len(out)
        return out

    def _seek(self, offset: int, whence: SeekWhence) -> int:
        target = resolve_seek(offset, whence, self._position, self._total)
        if target == self._position:
            return target
        if self._method is not HttpMethod.GET:
            raise unsupported(f"only GET streams can seek, this one is {self._method.value.upper()}")
        # Open the new range first: if the server refuses, the stream stays where it was.
        new_pump = None if self._total is not None and target >= self._total else self._request_from(target)
        if self._pump is not None:
            self._pump.cancel()
        self._pump, self._leftover, self._pending_error = new_pump, b"", None
        self._position = target
        return target

    def _tell(self) -> int:
        return self._position

    def _size(self) -> int:
        if self._total is None:
            raise unsupported(f"{self._url} sent neither Content-Range nor Content-Length")
        return self._total

    def _close(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            self._pump = None
