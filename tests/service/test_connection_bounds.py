"""The per-connection output bound of the server, on a real unix socket pair whose far end
never reads: what is queued stays under the byte bound, events are dropped (and counted)
rather than queued, and a reply that cannot get room within the write timeout closes the
connection instead of waiting forever."""

from __future__ import annotations

import asyncio
import socket

from stellatune.service import server as server_mod


def _event(n: int, size: int) -> dict:
    return {"ts": 0.0, "seq": n, "kind": "xrun", "severity": "info", "plugin_id": None, "data": {"pad": "x" * size}}


def test_a_connection_that_is_not_read_stays_bounded_and_is_closed(monkeypatch):
    monkeypatch.setattr(server_mod, "WRITE_TIMEOUT_S", 0.5)
    monkeypatch.setattr(server_mod, "MAX_QUEUED_BYTES", 256 << 10)

    async def scenario() -> tuple[int, int, bool]:
        ours, theirs = socket.socketpair()
        theirs.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        try:
            reader, writer = await asyncio.open_unix_connection(sock=ours)
            conn = server_mod._Conn(None, reader, writer, needs_auth=False)  # type: ignore[arg-type]
            conn.writer_task = asyncio.create_task(conn.write_loop())
            peak = 0
            for n in range(400):  # 400 x 8 KB events: 3.2 MB offered, the far end reads none
                conn.push_event(_event(n, 8 << 10))
                peak = max(peak, conn.queued_bytes)
                await asyncio.sleep(0)
            dropped = conn.dropped
            reply = {"jsonrpc": "2.0", "id": 1, "result": "y" * (64 << 10)}
            for _ in range(16):  # replies wait for room; with none, the connection is closed
                await conn.send(reply)
                peak = max(peak, conn.queued_bytes)
                if conn.closed:
                    break
            await asyncio.wait_for(conn.writer_task, 10)
            return peak, dropped, conn.closed
        finally:
            theirs.close()

    peak, dropped, closed = asyncio.run(scenario())
    assert peak <= server_mod.MAX_QUEUED_BYTES + (64 << 10) + 256, peak
    assert dropped > 0  # events past the bound were dropped and counted, not queued
    assert closed  # no room within the write timeout: closed, its queue freed
