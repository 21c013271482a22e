"""host-stream and fetch-json against real files, a real HTTP server and real sockets."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import pytest

from stellatune.errors import PluginError, PluginErrorCode
from stellatune.host import Header, HttpMethod, OpenRequest, SeekWhence, StreamOpenKind, fetch_json, open_stream
from stellatune.host.stream import MAX_READ_BYTES

FILE = StreamOpenKind.FILE
HTTP = StreamOpenKind.HTTP
TCP = StreamOpenKind.TCP


def refused(code: PluginErrorCode, fn, *args, **kwargs) -> PluginError:
    with pytest.raises(PluginError) as info:
        fn(*args, **kwargs)
    assert info.value.code is code, str(info.value)
    return info.value


# --- file --------------------------------------------------------------------------------------


def test_file_inside_granted_root_reads_fully_and_seeks(plugin_root: Path, make_ctx, blob: bytes) -> None:
    (plugin_root / "data" / "track.bin").write_bytes(blob)
    ctx = make_ctx(files=("data",))
    with open_stream(ctx, OpenRequest(FILE, "data/track.bin")) as s:
        assert s.size() == len(blob)
        assert s.read(1000) == blob[:1000]
        assert s.seek(-10, SeekWhence.END) == len(blob) - 10
        assert s.read(1000) == blob[-10:]  # short only at EOF
        assert s.read(10) == b""
        assert s.seek(5, SeekWhence.START) == 5 and s.seek(5, SeekWhence.CURRENT) == 10
        assert s.tell() == 10
        refused(PluginErrorCode.INVALID_ARG, s.seek, -1, SeekWhence.START)
        assert s.tell() == 10  # a refused seek moves nothing


def test_run_time_grant_opens_a_folder_outside_the_plugin(tmp_path: Path, make_ctx) -> None:
    music = tmp_path / "music"
    music.mkdir()
    (music / "a.flac").write_bytes(b"fLaC")
    ctx = make_ctx()
    refused(PluginErrorCode.DENIED, open_stream, ctx, OpenRequest(FILE, str(music / "a.flac")))
    ctx.grants.add_file_root(music)
    with open_stream(ctx, OpenRequest(FILE, str(music / "a.flac"))) as s:
        assert s.read(100) == b"fLaC"


def test_file_outside_roots_is_denied_even_when_missing(tmp_path: Path, make_ctx) -> None:
    ctx = make_ctx(files=("data",))
    err = refused(PluginErrorCode.DENIED, open_stream, ctx, OpenRequest(FILE, "/etc/passwd"))
    assert "permissions.files" in err.message
    refused(PluginErrorCode.DENIED, open_stream, ctx, OpenRequest(FILE, "data/../../secret"))
    refused(PluginErrorCode.DENIED, open_stream, ctx, OpenRequest(FILE, str(tmp_path / "nope")))
    refused(PluginErrorCode.NOT_FOUND, open_stream, ctx, OpenRequest(FILE, "data/nope"))


def test_symlink_escaping_a_root_is_denied(tmp_path: Path, plugin_root: Path, make_ctx) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("s3cret")
    os.symlink(secret, plugin_root / "data" / "link.txt")
    os.symlink(tmp_path, plugin_root / "data" / "dirlink")
    ctx = make_ctx(files=("data",))
    refused(PluginErrorCode.DENIED, open_stream, ctx, OpenRequest(FILE, "data/link.txt"))
    refused(PluginErrorCode.DENIED, open_stream, ctx, OpenRequest(FILE, "data/dirlink/secret.txt"))


def test_special_and_directory_targets_are_invalid(plugin_root: Path, make_ctx) -> None:
    os.mkfifo(plugin_root / "data" / "fifo")
    ctx = make_ctx(files=("data",))
    refused(PluginErrorCode.INVALID_ARG, open_stream, ctx, OpenRequest(FILE, "data/fifo"))  # must not block
    refused(PluginErrorCode.INVALID_ARG, open_stream, ctx, OpenRequest(FILE, "data"))


def test_closed_stream_and_huge_reads(plugin_root: Path, make_ctx) -> None:
    (plugin_root / "data" / "f").write_bytes(b"abc")
    s = open_stream(make_ctx(files=("data",)), OpenRequest(FILE, "data/f"))
    assert s.read(2**32 - 1) == b"abc"  # capped at MAX_READ_BYTES, not an allocation of 4 GiB
    assert MAX_READ_BYTES < 2**32
    s.close()
    s.close()
    refused(PluginErrorCode.INVALID_ARG, s.read, 1)


def test_udp_is_unsupported(make_ctx) -> None:
    refused(PluginErrorCode.UNSUPPORTED, open_stream, make_ctx(), OpenRequest(StreamOpenKind.UDP, "127.0.0.1:9"))


# --- http --------------------------------------------------------------------------------------


def test_http_reads_fully_and_seeks_with_range(http_server, make_ctx, blob: bytes) -> None:
    ctx = make_ctx(http=(http_server.endpoint,))
    with open_stream(ctx, OpenRequest(HTTP, http_server.url("/blob"))) as s:
        assert s.size() == len(blob)
        assert s.read(100_000) == blob[:100_000]  # blocks until n bytes, across many chunks
        assert s.seek(250_000) == 250_000
        assert s.read(10) == blob[250_000:250_010]
        assert s.seek(-5, SeekWhence.END) == len(blob) - 5
        assert s.read(100) == blob[-5:]
        assert s.read(100) == b""
        assert s.seek(len(blob) + 10) == len(blob) + 10 and s.read(1) == b""
        assert s.seek(3) == 3 and s.read(4) == blob[3:7] and s.tell() == 7


def test_http_read_ahead_is_bounded(http_server, make_ctx, blob: bytes) -> None:
    from stellatune.host.http_stream import CHUNK_BYTES, HttpStream

    ctx = make_ctx(http=(http_server.endpoint,))
    stream = HttpStream(ctx, OpenRequest(HTTP, http_server.url("/big-blob")), read_ahead_bytes=4 * CHUNK_BYTES)
    with stream:
        queue = stream._pump  # white box: the pump's buffer is the whole read-ahead
        assert queue.maxsize == 4
        for _ in range(20):  # the server could send 8 MiB at once; the host holds 4 chunks at most
            assert queue.qsize() <= 4
            assert len(stream.read(50_000)) == 50_000
        assert stream.tell() == 1_000_000 and stream.size() == 32 * len(blob)


def test_a_stream_moves_between_threads(plugin_root: Path, make_ctx, blob: bytes) -> None:
    """Passthrough: a source opens the stream, a decoder on another thread reads on."""
    (plugin_root / "data" / "t").write_bytes(blob)
    stream = open_stream(make_ctx(files=("data",)), OpenRequest(FILE, "data/t"))
    first = stream.read(1000)
    rest: list[bytes] = []
    reader = threading.Thread(target=lambda: rest.append(stream.read(len(blob))))
    reader.start()
    reader.join()
    assert first + rest[0] == blob
    stream.close()


def test_http_seek_without_range_support_is_unsupported(http_server, make_ctx, blob: bytes) -> None:
    ctx = make_ctx(http=(http_server.endpoint,))
    with open_stream(ctx, OpenRequest(HTTP, http_server.url("/norange"))) as s:
        assert s.read(10) == blob[:10]
        err = refused(PluginErrorCode.UNSUPPORTED, s.seek, 1000)
        assert "206" in err.message
        assert s.tell() == 10 and s.read(10) == blob[10:20]  # the stream carries on where it was


def test_http_read_timeout_on_a_stalling_server(http_server, make_ctx) -> None:
    ctx = make_ctx(http=(http_server.endpoint,))
    with open_stream(ctx, OpenRequest(HTTP, http_server.url("/stall"), read_timeout_ms=300)) as s:
        assert s.read(10) == b"x" * 10
        refused(PluginErrorCode.TIMEOUT, s.read, 10)


def test_http_post_with_headers_and_body(http_server, make_ctx) -> None:
    ctx = make_ctx(http=(http_server.endpoint,))
    req = OpenRequest(
        HTTP, http_server.url("/echo"), method=HttpMethod.POST, headers=(Header("X-Tag", "t1"),), body=b"hello"
    )
    with open_stream(ctx, req) as s:
        assert s.read(100) == b"t1:hello"
        refused(PluginErrorCode.UNSUPPORTED, s.seek, 0 + 1)


def test_http_denials_and_status_errors(http_server, make_ctx) -> None:
    ctx = make_ctx(http=(http_server.endpoint,))
    err = refused(PluginErrorCode.DENIED, open_stream, make_ctx(), OpenRequest(HTTP, http_server.url("/blob")))
    assert f"{http_server.endpoint} is not in permissions.http" in err.message
    other_port = make_ctx(http=("127.0.0.1",))  # a bare host grants the default port only
    refused(PluginErrorCode.DENIED, open_stream, other_port, OpenRequest(HTTP, http_server.url("/blob")))
    refused(PluginErrorCode.IO, open_stream, ctx, OpenRequest(HTTP, http_server.url("/missing")))
    refused(PluginErrorCode.INVALID_ARG, open_stream, ctx, OpenRequest(HTTP, "ftp://127.0.0.1/x"))
    refused(PluginErrorCode.DENIED, open_stream, ctx, OpenRequest(HTTP, http_server.url("/redirect-out")))
    with open_stream(ctx, OpenRequest(HTTP, http_server.url("/redirect-in"))) as s:
        assert b'"ok": true' in s.read(1000)


# --- fetch-json --------------------------------------------------------------------------------


def test_fetch_json(http_server, make_ctx) -> None:
    ctx = make_ctx(http=(http_server.endpoint,))
    assert '"items": [1, 2, 3]' in fetch_json(ctx, http_server.url("/json"))
    assert "not JSON" in refused(PluginErrorCode.IO, fetch_json, ctx, http_server.url("/notjson")).message
    assert (
        "limit"
        in refused(PluginErrorCode.IO, fetch_json, ctx, http_server.url("/big.json"), max_bytes=1_000_000).message
    )
    assert "404" in refused(PluginErrorCode.IO, fetch_json, ctx, http_server.url("/missing")).message
    refused(PluginErrorCode.INVALID_ARG, fetch_json, ctx, "  ")
    refused(PluginErrorCode.DENIED, fetch_json, make_ctx(), http_server.url("/json"))
    refused(PluginErrorCode.TIMEOUT, fetch_json, ctx, http_server.url("/stall"), timeout_s=0.3)


def test_fetch_json_has_one_deadline_across_redirects(http_server, make_ctx) -> None:
    ctx = make_ctx(http=(http_server.endpoint,))
    assert '"ok": true' in fetch_json(ctx, http_server.url("/slow-redirect/1"), timeout_s=5)
    # Four hops of at least 0.25 s each: every one is within 0.6 s, all of them are not.
    refused(PluginErrorCode.TIMEOUT, fetch_json, ctx, http_server.url("/slow-redirect/4"), timeout_s=0.6)


# --- tcp ---------------------------------------------------------------------------------------


@pytest.fixture
def tcp_server():
    """Answers each connection with ``pong:<first bytes received>`` then stays silent."""
    srv = socket.create_server(("127.0.0.1", 0))
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            conn.sendall(b"pong:" + conn.recv(100))
            done.wait(10)
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    yield f"127.0.0.1:{srv.getsockname()[1]}"
    done.set()
    srv.close()


def test_tcp_stream_sends_body_reads_and_times_out(tcp_server: str, make_ctx) -> None:
    ctx = make_ctx(tcp=(tcp_server,))
    with open_stream(ctx, OpenRequest(TCP, tcp_server, body=b"ping", read_timeout_ms=300)) as s:
        assert s.read(100) == b"pong:ping"
        assert s.tell() == 9
        refused(PluginErrorCode.TIMEOUT, s.read, 100)
        refused(PluginErrorCode.UNSUPPORTED, s.seek, 0)
        refused(PluginErrorCode.UNSUPPORTED, s.size)
    refused(PluginErrorCode.DENIED, open_stream, make_ctx(), OpenRequest(TCP, tcp_server))
    closed_port = socket.socket()
    closed_port.bind(("127.0.0.1", 0))
    endpoint = f"127.0.0.1:{closed_port.getsockname()[1]}"
    closed_port.close()
    refused(PluginErrorCode.IO, open_stream, make_ctx(tcp=(endpoint,)), OpenRequest(TCP, endpoint))


def test_http_grant_grammar_is_the_manifests(plugin_root: Path) -> None:
    from stellatune.host import Grants

    grants = Grants(plugin_root, http=("*.example.org", "api.example.com:8443", "[::1]:8080"), tcp=("127.0.0.1:9000",))
    assert grants.check_http("https://cdn.example.org/a?b=1").path == "/a?b=1"
    refused(PluginErrorCode.DENIED, grants.check_http, "https://example.org/")  # not the domain itself
    refused(PluginErrorCode.DENIED, grants.check_http, "http://cdn.example.org:8080/")  # default port only
    assert grants.check_http("https://API.example.com:8443").host == "api.example.com"
    assert grants.check_http("http://[::1]:8080/x").port == 8080
    assert grants.check_tcp("127.0.0.1:9000") == ("127.0.0.1", 9000)
    refused(PluginErrorCode.DENIED, grants.check_tcp, "127.0.0.1:9001")
    refused(PluginErrorCode.INVALID_ARG, grants.check_tcp, "127.0.0.1")
    refused(PluginErrorCode.INVALID_ARG, grants.add_tcp_endpoint, "host-without-port")


def test_context_from_manifest_permissions(plugin_root: Path) -> None:
    from stellatune.host import PluginHostContext
    from stellatune.manifest import Permissions

    (plugin_root / "data" / "x").write_bytes(b"1")
    ctx = PluginHostContext.from_permissions("dev.test.p", plugin_root, Permissions(files=("data",)))
    with open_stream(ctx, OpenRequest(FILE, "data/x")) as s:
        assert s.read(5) == b"1"
    empty = PluginHostContext.from_permissions("dev.test.p", plugin_root, None)  # no block: nothing allowed
    refused(PluginErrorCode.DENIED, open_stream, empty, OpenRequest(FILE, "data/x"))


@pytest.fixture
def https_server(tmp_path: Path, http_server):
    """The same routes over TLS, with a self-signed certificate for 127.0.0.1."""
    import ssl
    import subprocess

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    from http.server import ThreadingHTTPServer

    server = ThreadingHTTPServer(("127.0.0.1", 0), http_server.server.RequestHandlerClass)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}", cert
    server.shutdown()
    server.server_close()


def test_https_verifies_certificates(https_server, make_ctx, monkeypatch, blob: bytes) -> None:
    endpoint, cert = https_server
    ctx = make_ctx(http=(endpoint,))
    err = refused(PluginErrorCode.IO, open_stream, ctx, OpenRequest(HTTP, f"https://{endpoint}/blob"))
    assert "CERTIFICATE_VERIFY_FAILED" in err.message
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the host trusts it: OpenSSL's standard knob
    with open_stream(ctx, OpenRequest(HTTP, f"https://{endpoint}/blob")) as s:
        assert s.seek(1000) == 1000 and s.read(10) == blob[1000:1010]
    assert '"ok": true' in fetch_json(ctx, f"https://{endpoint}/json")
