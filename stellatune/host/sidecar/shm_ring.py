"""The shared-memory ring: an SPSC byte ring in a file, plus a FIFO doorbell so readers sleep.

File layout (little-endian, compatible with the original host): a 32-byte header, then
``capacity`` bytes of data.

====== ==== ==========================================================
offset size field
====== ==== ==========================================================
0      u32  magic ``0x53544D52`` ("STMR")
4      u32  version, 1
8      u32  capacity (4 KiB .. 64 MiB)
12     u32  flags (``reserved`` in the original; 0 there)
16     u64  write_pos, advanced only by the writer
24     u64  read_pos, advanced only by the reader
====== ==== ==========================================================

Positions only grow; a byte lives at ``32 + pos % capacity``. ``write_pos - read_pos`` is the
fill level. The ring carries a plain byte stream (no framing): message boundaries are the
protocol's business, as in the original.

Wake-up (our addition): next to ``<ring>`` lives a FIFO ``<ring>.bell``. After advancing
``write_pos`` the writer writes one byte to the bell; a reader with nothing to read drains the
bell and ``poll``s it, so it sleeps until data arrives or its timeout ends instead of spinning.
A writer that rings the bell sets flag bit 0 (:data:`FLAG_DOORBELL`); for a ring without it, a
reader falls back to short sleeps, so a sidecar written for the original (which only polls)
still works.

Each position is one aligned 8-byte store through a ``memoryview`` cast to ``Q`` (a single
machine store on x86-64 and aarch64), and the data is written before the position that
publishes it.
"""

from __future__ import annotations

import mmap
import os
import select
import struct
import time
from pathlib import Path
from typing import Optional

from ...errors import RingFormatError

__all__ = [
    "MAGIC",
    "VERSION",
    "HEADER_BYTES",
    "MIN_CAPACITY",
    "MAX_CAPACITY",
    "DEFAULT_CAPACITY",
    "FLAG_DOORBELL",
    "RingFormatError",
    "ShmRing",
    "bell_path",
    "clamp_capacity",
]

MAGIC = 0x53544D52
VERSION = 1
HEADER_BYTES = 32
MIN_CAPACITY = 4 * 1024
MAX_CAPACITY = 64 * 1024 * 1024
DEFAULT_CAPACITY = 1024 * 1024
FLAG_DOORBELL = 1
_HEAD = struct.Struct("<IIII")
_FALLBACK_SLEEP_S = 0.001  # only for rings whose writer never rings the bell


def clamp_capacity(requested: Optional[int]) -> int:
    """The ring capacity for a requested ``max-frame-bytes`` (default 1 MiB, clamped)."""
    if not requested:
        return DEFAULT_CAPACITY
    return max(MIN_CAPACITY, min(MAX_CAPACITY, int(requested)))


def bell_path(ring: Path) -> Path:
    return ring.with_name(ring.name + ".bell")


class ShmRing:
    """One direction of a ring, mapped by one side: either its writer or its reader."""

    def __init__(self, path: Path, *, writer: bool):
        self.path = Path(path)
        self.writer = writer
        fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
        try:
            size = os.fstat(fd).st_size
            if size < HEADER_BYTES:
                raise RingFormatError(f"ring file: {size} bytes is smaller than the header")
            self._map = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        magic, version, capacity, _flags = _HEAD.unpack_from(self._map, 0)
        if magic != MAGIC or version != VERSION:
            self._map.close()
            raise RingFormatError(f"ring file: not an STMR v{VERSION} ring (magic {magic:#x}, version {version})")
        if not MIN_CAPACITY <= capacity <= MAX_CAPACITY or size != HEADER_BYTES + capacity:
            self._map.close()
            raise RingFormatError(f"ring file: capacity {capacity} does not fit the file size {size}")
        self.capacity = capacity
        self._words = memoryview(self._map)[:HEADER_BYTES].cast("Q")  # [2] write_pos, [3] read_pos
        self._flags = memoryview(self._map)[12:16].cast("I")
        self._data = memoryview(self._map)[HEADER_BYTES:]
        # A writer's bell end is O_RDWR so opening never blocks and never fails for want of a
        # reader; a reader's is O_RDONLY, so it sees POLLHUP once every writer is gone.
        bell_flags = (os.O_RDWR if writer else os.O_RDONLY) | os.O_NONBLOCK | os.O_CLOEXEC
        self._bell = os.open(bell_path(self.path), bell_flags)
        if writer:
            self._flags[0] = self._flags[0] | FLAG_DOORBELL

    @classmethod
    def create(cls, path: Path, capacity: int = DEFAULT_CAPACITY) -> None:
        """Create an empty ring file and its bell; neither side is opened."""
        if not MIN_CAPACITY <= capacity <= MAX_CAPACITY:
            raise RingFormatError(f"ring capacity {capacity} outside {MIN_CAPACITY}..{MAX_CAPACITY}")
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, _HEAD.pack(MAGIC, VERSION, capacity, 0) + bytes(16))
            os.ftruncate(fd, HEADER_BYTES + capacity)
        finally:
            os.close(fd)
        os.mkfifo(bell_path(path), 0o600)

    # --- positions --------------------------------------------------------------------------

    def readable(self) -> int:
        return self._words[2] - self._words[3]

    def writable(self) -> int:
        return self.capacity - self.readable()

    # --- writer side -------------------------------------------------------------------------

    def write(self, data: bytes) -> int:
        """Copy as much of ``data`` as fits without blocking; returns the count (maybe 0)."""
        assert self.writer
        n = min(len(data), self.writable())
        if n == 0:
            return 0
        pos = self._words[2]
        start = pos % self.capacity
        first = min(n, self.capacity - start)
        self._data[start : start + first] = data[:first]
        self._data[0 : n - first] = data[first:n]
        self._words[2] = pos + n  # publish only after the bytes are in place
        try:
            os.write(self._bell, b"\1")
        except BlockingIOError:
            pass  # the bell is already full of rings: the reader will wake anyway
        return n

    # --- reader side -------------------------------------------------------------------------

    def read(self, max_bytes: int) -> bytes:
        """Take up to ``max_bytes`` without blocking (``b""`` when the ring is empty)."""
        assert not self.writer
        n = min(max_bytes, self.readable())
        if n <= 0:
            return b""
        pos = self._words[3]
        start = pos % self.capacity
        first = min(n, self.capacity - start)
        out = bytes(self._data[start : start + first]) + bytes(self._data[0 : n - first])
        self._words[3] = pos + n
        return out

    def wait_readable(
        self, timeout_s: Optional[float], extra_fd: Optional[int] = None, wake_fd: Optional[int] = None
    ) -> str:
        """Sleep until the ring has data, the writer is gone, ``extra_fd`` is readable, ``wake_fd``
        is readable (a cancelled call), or the timeout ends. Returns ``"data"``, ``"hangup"``,
        ``"extra"``, ``"wake"`` or ``"timeout"``."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        poller = select.poll()
        poller.register(self._bell, select.POLLIN)
        for fd in (extra_fd, wake_fd):
            if fd is not None:
                poller.register(fd, select.POLLIN)
        while True:
            self._drain_bell()
            if self.readable() > 0:
                return "data"
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if left == 0.0:
                return "timeout"
            if not self._flags[0] & FLAG_DOORBELL:  # a writer that only polls: nap, re-check
                left = _FALLBACK_SLEEP_S if left is None else min(left, _FALLBACK_SLEEP_S)
            events = poller.poll(None if left is None else max(1, int(left * 1000)))
            for fd, mask in events:
                if fd == wake_fd:
                    return "wake"
                if fd == extra_fd:
                    return "data" if self.readable() > 0 else "extra"
                if mask & select.POLLHUP and not mask & select.POLLIN:
                    return "data" if self.readable() > 0 else "hangup"

    def _drain_bell(self) -> None:
        try:
            while os.read(self._bell, 4096):
                pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        if self._bell >= 0:
            os.close(self._bell)
            self._bell = -1
            self._words.release()
            self._flags.release()
            self._data.release()
            self._map.close()
