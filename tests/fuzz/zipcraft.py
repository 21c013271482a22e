"""A zip writer that writes exactly what it is told: any name bytes, file type bits, flags,
compression method, and declared sizes or CRCs that lie. ``zipfile`` sanitises some of that on
write, and a hostile artifact is precisely what it would not produce. Shared by the zip fuzzer
and its atheris harness."""

from __future__ import annotations

import stat
import struct
import zlib
from dataclasses import dataclass
from typing import Optional

STORED, DEFLATED = 0, 8


@dataclass
class Entry:
    name: bytes
    data: bytes = b""
    method: int = DEFLATED
    flags: int = 0
    mode: int = stat.S_IFREG | 0o644
    """Unix mode stored in the high half of ``external_attr`` (0: none, as a DOS zipper writes)."""
    declared_size: Optional[int] = None
    """Uncompressed size in the central directory (default: the true one)."""
    crc: Optional[int] = None
    local_name: Optional[bytes] = None
    """Name in the local header, when it should differ from the central directory's."""


def _compress(entry: Entry) -> bytes:
    if entry.method == DEFLATED:
        c = zlib.compressobj(6, zlib.DEFLATED, -15)
        return c.compress(entry.data) + c.flush()
    return entry.data  # stored, or an unsupported method: the bytes as given


def build_zip(entries: list[Entry], comment: bytes = b"") -> bytes:
    out = bytearray()
    central = bytearray()
    for e in entries:
        payload = _compress(e)
        crc = zlib.crc32(e.data) if e.crc is None else e.crc & 0xFFFFFFFF
        size = len(e.data) if e.declared_size is None else e.declared_size & 0xFFFFFFFF
        offset = len(out)
        local_name = e.name if e.local_name is None else e.local_name
        out += struct.pack(
            "<IHHHHHIIIHH",
            0x04034B50,
            20,
            e.flags & 0xFFFF,
            e.method & 0xFFFF,
            0,
            0x21,
            crc,
            len(payload),
            size,
            len(local_name),
            0,
        )
        out += local_name + payload
        central += struct.pack(
            "<IHHHHHHIIIHHHHHII",
            0x02014B50,
            (3 << 8) | 20,  # made by: Unix, so the mode bits count
            20,
            e.flags & 0xFFFF,
            e.method & 0xFFFF,
            0,
            0x21,
            crc,
            len(payload),
            size,
            len(e.name),
            0,
            0,
            0,
            0,
            (e.mode & 0xFFFF) << 16,
            offset,
        )
        central += e.name
    cd_offset = len(out)
    out += central
    out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(entries), len(entries), len(central), cd_offset, len(comment))
    return bytes(out + comment)
