"""The STMR ring file format, wrap-around, and the doorbell wake-up."""

from __future__ import annotations

import struct
import threading
from pathlib import Path

import pytest

from stellatune.host.sidecar.shm_ring import (
    DEFAULT_CAPACITY,
    FLAG_DOORBELL,
    HEADER_BYTES,
    MAGIC,
    MAX_CAPACITY,
    MIN_CAPACITY,
    RingFormatError,
    ShmRing,
    bell_path,
    clamp_capacity,
)


def test_header_layout_matches_the_original(tmp_path: Path) -> None:
    ring = tmp_path / "r.shm"
    ShmRing.create(ring, 8192)
    raw = ring.read_bytes()
    assert len(raw) == HEADER_BYTES + 8192
    assert struct.unpack_from("<IIIIQQ", raw) == (MAGIC, 1, 8192, 0, 0, 0)
    assert raw[:4] == b"RMTS"  # 0x53544D52 little-endian
    assert bell_path(ring).exists()


def test_capacity_clamp() -> None:
    assert clamp_capacity(None) == DEFAULT_CAPACITY == 1024 * 1024
    assert clamp_capacity(10) == MIN_CAPACITY and clamp_capacity(1 << 40) == MAX_CAPACITY
    assert clamp_capacity(65536) == 65536


def test_wrap_around_keeps_the_byte_stream_and_positions_are_monotonic(tmp_path: Path) -> None:
    ring = tmp_path / "r.shm"
    ShmRing.create(ring, MIN_CAPACITY)
    reader, writer = ShmRing(ring, writer=False), ShmRing(ring, writer=True)
    sent = bytes(i % 251 for i in range(50_000))
    got, pos = bytearray(), 0
    while len(got) < len(sent):
        pos += writer.write(sent[pos : pos + 3000])  # partial when full: never blocks
        got += reader.read(1234)
    assert bytes(got) == sent
    assert struct.unpack_from("<QQ", ring.read_bytes(), 16) == (len(sent), len(sent))
    assert writer.write(b"x" * (MIN_CAPACITY + 1)) == MIN_CAPACITY  # full ring: a partial write
    assert writer.write(b"y") == 0
    assert struct.unpack_from("<I", ring.read_bytes(), 12)[0] & FLAG_DOORBELL
    reader.close()
    writer.close()


def test_a_waiting_reader_wakes_on_the_bell_and_sees_the_writer_leave(tmp_path: Path) -> None:
    ring = tmp_path / "r.shm"
    ShmRing.create(ring, MIN_CAPACITY)
    reader = ShmRing(ring, writer=False)
    writer = ShmRing(ring, writer=True)
    assert reader.wait_readable(0.05) == "timeout"
    threading.Timer(0.05, writer.write, args=(b"ding",)).start()
    assert reader.wait_readable(10) == "data" and reader.read(10) == b"ding"
    writer.close()
    assert reader.wait_readable(10) == "hangup"
    reader.close()


def test_invalid_ring_files_are_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.shm"
    bad.write_bytes(b"\0" * (HEADER_BYTES + MIN_CAPACITY))
    bell_path(bad).touch()
    with pytest.raises(RingFormatError, match="not an STMR"):
        ShmRing(bad, writer=False)
    short = tmp_path / "short.shm"
    ShmRing.create(short, MIN_CAPACITY)
    with open(short, "r+b") as f:
        f.truncate(HEADER_BYTES + 100)
    with pytest.raises(RingFormatError, match="capacity"):
        ShmRing(short, writer=False)
    with pytest.raises(RingFormatError):
        ShmRing.create(tmp_path / "tiny.shm", 16)
