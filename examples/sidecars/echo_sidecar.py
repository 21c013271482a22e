#!/usr/bin/env python3
"""Echo sidecar: sends back every byte it receives, on every channel the host offers.

A small, dependency-free reference for sidecar authors. It reads the endpoint variables
(STELLATUNE_SIDECAR_CONTROL_* / STELLATUNE_SIDECAR_DATA_*), connects to each, and echoes.
It exits when stdin reaches EOF (the host's shutdown request).

Modes (first argument): ``echo`` (default); ``silent`` (reads, never answers); ``chatty``
(first writes 2 MiB of log lines to stdout and stderr, then echoes); ``ignore-eof`` (echoes,
but does not exit on stdin EOF, so the host must kill it).
"""
import mmap
import os
import select
import socket
import struct
import sys
import threading
import time

MODE = sys.argv[1] if len(sys.argv) > 1 else "echo"
PREFIX = "STELLATUNE_SIDECAR_"
RING_MAGIC, RING_VERSION, RING_HEADER, FLAG_DOORBELL = 0x53544D52, 1, 32, 1


def log(message):
    print(f"echo-sidecar[{os.getpid()}]: {message}", file=sys.stderr, flush=True)


def answer(data):
    return data if MODE != "silent" else b""


def serve_socket(stream):
    with stream:
        while True:
            data = stream.recv(65536)
            if not data:
                return
            stream.sendall(answer(data))


def serve_unix(path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    serve_socket(sock)


def serve_tcp(endpoint):
    host, port = endpoint.rsplit(":", 1)
    serve_socket(socket.create_connection((host, int(port))))


def pair(value):
    """``tx=<host to sidecar>;rx=<sidecar to host>``."""
    return dict(part.split("=", 1) for part in value.split(";"))


def serve_fifo(value):
    paths = pair(value)
    # Order matters: the writing end first (the host's reader is already open), then the
    # reading end, which completes the host's connect. The other order would let the host
    # read before any writer exists, and a FIFO without a writer reads as end of stream.
    wfd = os.open(paths["rx"], os.O_WRONLY)
    rfd = os.open(paths["tx"], os.O_RDONLY)
    while True:
        data = os.read(rfd, 65536)
        if not data:
            return
        out = answer(data)
        while out:
            out = out[os.write(wfd, out):]


class Ring:
    """One side of an STMR ring: 32-byte header (magic, version, capacity, flags, write_pos,
    read_pos), then the data; a FIFO ``<ring>.bell`` carries wake-ups."""

    def __init__(self, path, writer):
        with open(path, "r+b") as f:
            self.map = mmap.mmap(f.fileno(), 0)
        magic, version, self.capacity, _ = struct.unpack_from("<IIII", self.map, 0)
        assert (magic, version) == (RING_MAGIC, RING_VERSION), "not an STMR v1 ring"
        self.words = memoryview(self.map)[:RING_HEADER].cast("Q")
        self.data = memoryview(self.map)[RING_HEADER:]
        self.bell = os.open(path + ".bell", (os.O_RDWR if writer else os.O_RDONLY) | os.O_NONBLOCK)
        if writer:
            flags = memoryview(self.map)[12:16].cast("I")
            flags[0] |= FLAG_DOORBELL

    def write_all(self, data):
        while data:
            free = self.capacity - (self.words[2] - self.words[3])
            if free == 0:
                time.sleep(0.001)  # the host drains quickly; an echo example need not do better
                continue
            n, pos = min(free, len(data)), self.words[2]
            start = pos % self.capacity
            first = min(n, self.capacity - start)
            self.data[start:start + first] = data[:first]
            self.data[0:n - first] = data[first:n]
            self.words[2] = pos + n
            data = data[n:]
            try:
                os.write(self.bell, b"\1")
            except BlockingIOError:
                pass

    def read_wait(self, max_bytes=65536):
        """Data, or b"" once the host has closed its end and the ring is empty."""
        while True:
            try:
                while os.read(self.bell, 4096):
                    pass
                hung_up = True  # read() returned b"": no writer holds the bell any more
            except BlockingIOError:
                hung_up = False
            available = self.words[2] - self.words[3]
            if available:
                n, pos = min(max_bytes, available), self.words[3]
                start = pos % self.capacity
                first = min(n, self.capacity - start)
                out = bytes(self.data[start:start + first]) + bytes(self.data[0:n - first])
                self.words[3] = pos + n
                return out
            if hung_up:
                return b""
            select.select([self.bell], [], [])


def serve_ring(value):
    paths = pair(value)
    inbound, outbound = Ring(paths["tx"], writer=False), Ring(paths["rx"], writer=True)
    while True:
        data = inbound.read_wait()
        if not data:
            return
        outbound.write_all(answer(data))


SERVERS = {
    "UNIX_SOCKET": serve_unix, "UNIX": serve_unix,
    "LOOPBACK_TCP": serve_tcp, "TCP": serve_tcp,
    "NAMED_PIPE": serve_fifo, "PIPE": serve_fifo,
    "SHARED_MEMORY_RING": serve_ring, "SHM": serve_ring,
}


def kind_of(name):
    for suffix in sorted(SERVERS, key=len, reverse=True):
        if name.endswith("_" + suffix):
            return suffix
    return None


def main():
    if MODE == "chatty":
        line = "x" * 99
        for _ in range(2 * 1024 * 1024 // 200):
            print(line, flush=False)
            print(line, file=sys.stderr)
        sys.stdout.flush()
    stdio_is_channel = os.environ.get(PREFIX + "CONTROL_STDIO") == "stdio"
    for name, value in sorted(os.environ.items()):
        suffix = kind_of(name) if name.startswith(PREFIX) else None
        if suffix:
            log(f"serving {name}")
            threading.Thread(target=SERVERS[suffix], args=(value,), daemon=True).start()
    while True:  # stdin: a channel when stdio is one, and the shutdown signal in any case
        data = os.read(0, 65536)
        if not data:
            break
        if stdio_is_channel:
            os.write(1, answer(data))
    log("stdin closed")
    if MODE == "ignore-eof":
        while True:
            time.sleep(3600)


if __name__ == "__main__":
    main()
