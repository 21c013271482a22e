"""A real ``stellatune serve`` against clients that break the rules: notifications with errors,
ids the reply must keep, numbers no double holds, clients that never read, tokens that are not
ASCII, a socket path that is somebody's file. The service answers by the protocol, stays bounded,
and keeps serving everyone else."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import time
from pathlib import Path

import pytest

from stellatune.service import CallError, Client

from .conftest import STELLATUNE


def _lines(sock: socket.socket, payload: bytes, replies: int) -> list[dict]:
    sock.sendall(payload)
    f = sock.makefile("rb")
    try:
        return [json.loads(f.readline()) for _ in range(replies)]
    finally:
        f.close()


def _connect(path: Path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    s.connect(str(path))
    return s


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_notifications_are_never_answered_and_errors_keep_the_id(serve):
    served = serve()
    with _connect(served.socket) as s:
        replies = _lines(
            s,
            b'{"jsonrpc": "2.0", "method": "no.such"}\n'  # notifications: no reply, even for errors
            b'{"jsonrpc": "2.0", "method": "player.seek", "params": {"seconds": "x"}}\n'
            b'{"jsonrpc": "2.0", "method": "service.ping", "params": 3}\n'
            b'{"jsonrpc": "2.0", "id": 7, "method": "service.ping", "params": [1]}\n'
            b'{"id": 11, "method": "service.ping"}\n'
            b'{"jsonrpc": "2.0", "id": 12, "method": "player.seek", "params": {"seconds": NaN}}\n'
            b'{"jsonrpc": "2.0", "id": 13, "method": "player.volume", "params": {"db": 1e400}}\n'
            b'{"jsonrpc": "2.0", "id": 14, "method": "service.ping"}\n',
            5,
        )
    assert [(r["id"], r.get("error", {}).get("code")) for r in replies] == [
        (7, -32602),  # params that are not an object: the id was readable, so it is kept
        (11, -32600),  # no "jsonrpc": not a request object, answered with its id
        (None, -32700),  # NaN is not JSON: nothing could be read
        (13, -32602),  # 1e400 is no double
        (14, None),
    ]
    assert replies[-1]["result"] == {"pong": True}


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("player.seek", {"seconds": int("9" * 400)}),
        ("player.volume", {"db": int("9" * 400)}),
        ("chain.insert", {"index": 0, "spec": ""}),
        ("chain.insert", {"index": 0, "spec": "a:b:not json"}),
        ("chain.set", {"stages": ["justone"]}),
    ],
)
def test_out_of_range_numbers_and_malformed_specs_are_invalid_params(serve, method, params):
    served = serve()
    with _connect(served.socket) as s:
        line = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode() + b"\n"
        (reply,) = _lines(s, line, 1)
    assert reply["error"]["code"] == -32602, reply
    assert served.call("service.ping") == {"pong": True}


def test_a_last_line_without_its_newline_is_served(serve):
    served = serve()
    with _connect(served.socket) as s:
        s.sendall(b'{"jsonrpc": "2.0", "id": 5, "method": "service.ping"}')
        s.shutdown(socket.SHUT_WR)
        reply = json.loads(s.makefile("rb").readline())
    assert reply == {"jsonrpc": "2.0", "id": 5, "result": {"pong": True}}


def test_a_client_that_never_reads_costs_bounded_memory_and_blocks_nobody(serve):
    served = serve()
    served.call("player.status")
    before = _rss_kb(served.proc.pid)
    hog = _connect(served.socket)
    hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    # Each request names a 100 KB method: without a byte bound and a short quote, its error
    # reply would hold the name twice, and 1000 of them pin 200 MB.
    named = b'{"jsonrpc": "2.0", "id": 1, "method": "' + b"m" * 100_000 + b'"}\n'
    # Then many small requests with ~1.5 KB replies: 60000 of them would queue 90 MB unbounded.
    status = b'{"jsonrpc": "2.0", "id": 2, "method": "player.status"}\n' * 100
    hog.settimeout(0.5)
    sent = 0
    deadline = time.monotonic() + 60
    for request, count in ((named, 1000), (status, 600)):
        for _ in range(count):
            if time.monotonic() > deadline:
                break
            try:
                hog.sendall(request)
                sent += 1
            except OSError:  # a timeout: the service stopped reading it, its replies wait for room
                break
    with Client(served.socket, timeout=30) as other:
        assert other.call("service.ping") == {"pong": True}  # everyone else is served meanwhile
    growth_mb = (_rss_kb(served.proc.pid) - before) / 1024
    assert growth_mb < 64, f"{growth_mb:.0f} MB held for a client that does not read ({sent} requests)"
    hog.close()
    assert served.call("service.ping") == {"pong": True}


def test_tcp_token_of_any_text_and_the_auth_deadline(serve, tmp_path):
    token = "ключ-" + secrets.token_hex(12)  # not ASCII
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n", encoding="utf-8")
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    served = serve("--tcp", f"127.0.0.1:{port}", "--token-file", str(token_file))
    with Client(tcp=("127.0.0.1", port), token=token) as c:
        assert c.call("service.ping") == {"pong": True}
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall('{"auth": "é"}\n'.encode())
        f = s.makefile("rb")
        assert json.loads(f.readline())["error"]["data"]["code"] == "unauthorized"
        assert f.readline() == b""  # and closed
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        started = time.monotonic()
        assert s.makefile("rb").readline() == b""  # says nothing: closed after the auth deadline
        assert 5 < time.monotonic() - started < 25
    assert served.proc.poll() is None


def test_subscribers_hear_service_stopping(serve):
    served = serve()
    with Client(served.socket, timeout=30) as c:
        c.call("events.subscribe", {"kinds": ["service-stopping"]})
        with Client(served.socket, timeout=30) as other:
            other.call("service.shutdown")
        msg = c.next_notification()
    assert msg["params"]["kind"] == "service-stopping"
    assert served.proc.wait(60) == 0


def _serve_once(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*STELLATUNE, "serve", "--output", "null", "--plugins-dir", str(cwd / "second-plugins"), *args],
        cwd=str(cwd),
        capture_output=True,
        timeout=120,
    )


def test_a_socket_path_that_is_a_file_is_refused_and_kept(tmp_path):
    victim = tmp_path / "notes.sock"
    victim.write_text("somebody's data\n")
    done = _serve_once("--socket", str(victim), cwd=tmp_path)
    assert done.returncode == 1 and b"not a socket" in done.stderr and b"Traceback" not in done.stderr
    assert victim.read_text() == "somebody's data\n"


def test_a_second_service_on_a_live_socket_is_one_error_line(serve, tmp_path):
    served = serve()
    done = _serve_once("--socket", str(served.socket), cwd=tmp_path)
    assert done.returncode == 1 and b"already listening" in done.stderr and b"Traceback" not in done.stderr
    assert not (tmp_path / "second-plugins").exists()  # refused before the runtime was built
    assert served.call("service.ping") == {"pong": True}


def test_startup_errors_are_one_line(tmp_path):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    token_file = tmp_path / "token"
    token_file.write_text(secrets.token_hex(16))
    try:
        port = taken.getsockname()[1]
        sock = str(tmp_path / "a.sock")
        busy = _serve_once(
            "--socket", sock, "--tcp", f"127.0.0.1:{port}", "--token-file", str(token_file), cwd=tmp_path
        )
    finally:
        taken.close()
    assert busy.returncode == 1 and b"error" in busy.stderr and b"Traceback" not in busy.stderr, busy.stderr
    assert not os.path.exists(sock)  # its socket file went with it
    too_long = _serve_once("--socket", str(tmp_path / ("x" * 120) / "s.sock"), cwd=tmp_path)
    assert too_long.returncode == 1 and b"Traceback" not in too_long.stderr, too_long.stderr
    bad_port = _serve_once("--tcp", "127.0.0.1:99999", "--token-file", str(token_file), cwd=tmp_path)
    assert bad_port.returncode == 2 and b"out of range" in bad_port.stderr


def test_clients_that_never_authenticate_are_capped(serve, tmp_path):
    from stellatune.service.server import MAX_UNAUTHENTICATED

    token = secrets.token_hex(16)
    token_file = tmp_path / "token"
    token_file.write_text(token)
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    served = serve("--tcp", f"127.0.0.1:{port}", "--token-file", str(token_file))
    silent = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(MAX_UNAUTHENTICATED)]
    try:
        # The service accepts in order, so by the time it takes the next one every silent client
        # is counted: the next is refused at once, whatever it would have sent.
        with socket.create_connection(("127.0.0.1", port), timeout=30) as extra:
            f = extra.makefile("rb")
            refusal = json.loads(f.readline())
            assert refusal["error"]["data"]["code"] == "unauthorized"
            assert "waiting to authenticate" in refusal["error"]["message"]
            assert f.readline() == b""  # and closed
        # The local socket needs no token and is not part of the cap.
        with Client(served.socket) as c:
            assert c.call("service.ping") == {"pong": True}
    finally:
        for s in silent:
            s.close()
    # Once they are gone, a client with the token is served again.
    deadline = time.monotonic() + 30
    while True:
        try:
            with Client(tcp=("127.0.0.1", port), token=token) as c:
                assert c.call("service.ping") == {"pong": True}
            break
        except CallError as e:  # refused while the closed ones are being reaped
            assert "waiting to authenticate" in str(e)
            assert time.monotonic() < deadline, "the silent clients were never let go"
            time.sleep(0.05)
    assert served.proc.poll() is None
