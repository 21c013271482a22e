"""A real ``stellatune serve`` subprocess, driven through its socket."""

from __future__ import annotations

import json
import secrets
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import jsonschema
import pytest

from stellatune.service import EVENTS_SCHEMA_PATH, CallError, Client

from .conftest import GAIN, STELLATUNE, wait_for

SCHEMA = json.loads(EVENTS_SCHEMA_PATH.read_text())


def _frames(served) -> int:
    return int(served.call("player.status")["counters"]["frames_played"])


def _playing(served, track) -> None:
    served.call("player.enqueue", {"items": [track(60.0)]})
    assert served.call("player.play")["state"] == "playing"
    start = _frames(served)
    wait_for(lambda: _frames(served) > start, timeout=30)


def _events_until(client: Client, *kinds: str, timeout: float = 30.0) -> list[dict]:
    """The events pushed on ``client`` until each of ``kinds`` has arrived (in any order: some
    come from the RPC thread, some from the player's monitor)."""
    client.sock.settimeout(timeout)
    seen: list[dict] = []
    missing = set(kinds)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = client.next_notification()
        assert msg["method"] == "event"
        seen.append(msg["params"])
        missing.discard(msg["params"]["kind"])
        if not missing:
            return seen
    raise AssertionError(f"no {sorted(missing)} event; got {[e['kind'] for e in seen]}")


def test_enqueue_seek_and_edit_the_chain_while_it_plays(serve, track, built):
    served = serve()
    events = served.client()
    assert events.call("events.subscribe")["subscribed"] is True
    installed = served.call("plugins.install", {"path": str(built("gain"))})
    assert installed["id"] == GAIN
    _playing(served, track)

    chain = served.call("chain.insert", {"index": 0, "spec": f'{GAIN}:gain:{{"gain_db": -6}}'})
    assert len(chain) == 1 and chain[0]["spec"].startswith(GAIN)
    assert served.call("chain.update_config", {"index": 0, "config": {"gain_db": -3}})["outcome"] in (
        "hot-apply",
        "recreate",
        "reject",
    )
    served.call("chain.bypass", {"index": 0, "on": True})
    served.call("chain.bypass", {"index": 0, "on": False})
    assert served.call("player.seek", {"seconds": 20.0}) == {"seeked": True}
    pos = served.call("player.status")["position"]
    assert pos is not None and pos >= 19.0
    served.call("player.volume", {"db": -10})
    served.call("chain.remove", {"index": 0})
    assert served.call("chain.get") == []
    status = served.call("player.status")
    assert status["state"] == "playing" and status["counters"]["ring_underruns"] == 0

    got = _events_until(events, "seek", "track-started")
    kinds = [e["kind"] for e in got]
    for e in got:
        jsonschema.validate(e, SCHEMA)
    seqs = [e["seq"] for e in got]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    for kind in ("plugin-installed", "plugin-transition", "track-started", "config-plan", "stage-bypass"):
        assert kind in kinds, kinds
    # Causal order only: track-started comes from the player's monitor (a 20 ms poll), which a
    # loaded machine can delay past the first chain edit.
    assert kinds.index("plugin-installed") < kinds.index("config-plan") < kinds.index("stage-bypass")
    events.close()


def test_status_json_agrees_with_player_status(serve, track):
    served = serve()
    _playing(served, track)
    out = subprocess.run(
        [*STELLATUNE, "status", "--json", "--socket", str(served.socket)], capture_output=True, timeout=60, check=True
    )
    doc = json.loads(out.stdout)
    player = served.call("player.status")
    assert doc["player"]["state"] == player["state"] == "playing"
    assert doc["player"]["current"] == player["current"]
    assert doc["player"]["position"] <= player["position"]
    assert doc["chain"] == player["chain"]
    assert set(doc) >= {"plugins", "sidecars", "counters"}
    human = subprocess.run([*STELLATUNE, "status", "--socket", str(served.socket)], capture_output=True, timeout=60)
    assert human.returncode == 0 and b"player: playing" in human.stdout


def test_ctl_prints_results_and_exit_codes(serve):
    served = serve()
    ctl = [*STELLATUNE, "ctl", "--socket", str(served.socket)]
    ok = subprocess.run([*ctl, "chain.get"], capture_output=True, timeout=60)
    assert ok.returncode == 0 and json.loads(ok.stdout) == []
    bad_json = subprocess.run([*ctl, "player.seek", "{nope"], capture_output=True, timeout=60)
    assert bad_json.returncode == 2
    bad_type = subprocess.run([*ctl, "player.seek", '{"seconds": "x"}'], capture_output=True, timeout=60)
    assert bad_type.returncode == 2 and b"invalid-params" in bad_type.stderr
    missing = subprocess.run([*ctl, "no.such"], capture_output=True, timeout=60)
    assert missing.returncode == 1 and b"method-not-found" in missing.stderr and b"hint:" in missing.stderr
    not_installed = subprocess.run([*ctl, "plugins.info", '{"id": "x.y"}'], capture_output=True, timeout=60)
    assert not_installed.returncode == 1 and b"plugin-not-installed" in not_installed.stderr


def test_errors_carry_the_taxonomy(serve):
    served = serve()
    with served.client() as c:
        with pytest.raises(CallError) as err:
            c.call("plugins.info", {"id": "no.such.plugin"})
        assert err.value.code == -32000
        data = err.value.data
        assert data["code"] == "plugin-not-installed" and data["severity"] == "warning" and data["hint"]
        assert set(data) >= {"code", "plugin_id", "capability", "action", "severity", "hint"}
        with pytest.raises(CallError) as err:
            c.call("chain.remove", {"index": 3})
        assert err.value.code == -32602


def _raw(path: Path, payload: bytes, read: bool = True, timeout: float = 30.0) -> list[dict]:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(str(path))
    s.sendall(payload)
    if not read:
        s.close()
        return []
    f = s.makefile("rb")
    out = []
    for _ in range(payload.count(b"\n")):
        line = f.readline()
        if not line:
            break
        out.append(json.loads(line))
    f.close()
    s.close()
    return out


def test_bad_input_never_kills_it_and_playback_goes_on(serve, track):
    served = serve()
    _playing(served, track)
    replies = _raw(
        served.socket,
        b"not json\n"
        b"[1, 2]\n"
        b'{"jsonrpc": "2.0", "id": 1, "method": "no.such"}\n'
        b'{"jsonrpc": "2.0", "id": 2, "method": "player.seek", "params": {"seconds": "far"}}\n'
        b'{"jsonrpc": "2.0", "id": 3, "method": "player.volume", "params": [1]}\n'
        b'{"jsonrpc": "1.0", "id": 4, "method": "player.status"}\n'
        b'{"jsonrpc": "2.0", "id": 5, "method": "chain.insert", "params": {"index": true, "spec": 1}}\n'
        b"\xff\xfe\n"
        # JSON that decodes to what a reply cannot carry as is: an infinite id, lone surrogates.
        b'{"jsonrpc": "2.0", "id": 1e400, "method": "player.status"}\n'
        b'{"jsonrpc": "2.0", "id": "\\ud800", "method": "no.such"}\n'
        b'{"jsonrpc": "2.0", "id": 6, "method": "\\udfff"}\n',
    )
    codes = [r["error"]["code"] for r in replies]
    assert codes == [-32700, -32600, -32601, -32602, -32602, -32600, -32602, -32700, -32600, -32601, -32601]
    assert replies[9]["id"] == "\ud800" and replies[10]["id"] == 6
    # Over 1 MiB: refused; the next request on the same connection is served.
    big = b'{"jsonrpc": "2.0", "id": 9, "method": "player.status", "params": {"x": "' + b"a" * (1 << 21) + b'"}}\n'
    replies = _raw(served.socket, big + b'{"jsonrpc": "2.0", "id": 10, "method": "player.status"}\n')
    assert replies[0]["error"]["data"]["code"] == "message-too-large"
    assert replies[1]["id"] == 10 and replies[1]["result"]["state"] == "playing"
    # Clients that vanish mid-request (and mid-line).
    for _ in range(5):
        _raw(served.socket, b'{"jsonrpc": "2.0", "id": 1, "method": "runtime.status"}\n', read=False)
        _raw(served.socket, b'{"jsonrpc": "2.0", "id": 1, "meth', read=False)
    # 100 concurrent clients.
    results: list[object] = []

    def one(i: int) -> None:
        try:
            with served.client() as c:
                results.append(c.call("player.status")["state"])
        except Exception as e:  # noqa: BLE001
            results.append(e)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert results.count("playing") == 100, [r for r in results if r != "playing"][:3]
    # Still alive, still playing.
    before = _frames(served)
    wait_for(lambda: _frames(served) > before, timeout=30)
    assert served.proc.poll() is None
    assert served.call("player.status")["state"] == "playing"


def test_hypothesis_requests_never_crash_it(serve):
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies
    served = serve()
    c = served.client()
    json_values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
        max_leaves=10,
    )
    methods = st.sampled_from(
        ["player.seek", "player.volume", "chain.insert", "chain.move", "chain.bypass", "plugins.info", "x", ""]
    )

    @hypothesis.settings(max_examples=60, deadline=None)
    @hypothesis.given(method=methods, params=json_values)
    def check(method, params):
        c.send({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
        reply = c.read()
        assert reply.get("id") == 1 or reply.get("id") is None

    check()
    c.close()
    assert served.call("service.ping") == {"pong": True}


def test_sigterm_leaves_no_socket_and_no_child(serve, track, built):
    served = serve()
    served.call("plugins.install", {"path": str(built("gain"))})
    _playing(served, track)
    kids = served.children()
    assert served.stop() == 0
    assert not served.socket.exists()
    for pid in kids:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split(")")[1][:3]


def test_service_shutdown_method_stops_it(serve):
    served = serve()
    assert served.call("service.shutdown") == {"stopping": True}
    assert served.proc.wait(60) == 0
    assert not served.socket.exists()


def test_socket_is_private(serve):
    served = serve()
    assert served.socket.stat().st_mode & 0o777 == 0o600


def test_tcp_needs_the_token(serve, tmp_path):
    token = secrets.token_hex(16)
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    port_probe = socket.socket()
    port_probe.bind(("127.0.0.1", 0))
    port = port_probe.getsockname()[1]
    port_probe.close()
    served = serve("--tcp", f"127.0.0.1:{port}", "--token-file", str(token_file))
    # No auth: refused and closed.
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(b'{"jsonrpc": "2.0", "id": 1, "method": "player.status"}\n')
        reply = json.loads(s.makefile("rb").readline())
        assert reply["error"]["data"]["code"] == "unauthorized"
    with pytest.raises(CallError):
        Client(tcp=("127.0.0.1", port), token="wrong" * 4)
    with Client(tcp=("127.0.0.1", port), token=token) as c:
        assert c.call("player.status")["state"] == "stopped"
    assert served.proc.poll() is None


def test_prometheus_endpoint_parses(serve, track):
    from prometheus_client.parser import text_string_to_metric_families

    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    served = serve("--metrics", f"127.0.0.1:{port}")
    _playing(served, track)
    text = wait_for(lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read().decode())
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name in (
        "stellatune_xruns",
        "stellatune_ring_underruns",
        "stellatune_sync_duration_ms",
        "stellatune_live_objects",
    ):
        assert name in families, sorted(families)
    snap = served.call("metrics.get")
    assert snap["player"]["state"] == "playing" and snap["sync"]["count"] >= 1


def test_events_log_is_json_lines(serve, tmp_path):
    log = tmp_path / "events.jsonl"
    served = serve("--events-log", str(log))
    served.call("plugins.sync")
    served.stop()
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["kind"] for e in lines][-1] == "service-stopping"
    for e in lines:
        jsonschema.validate(e, SCHEMA)


@pytest.mark.audio
def test_plays_on_the_jack_device_while_edited(jack_server, serve, track, built):
    served = serve(output=None)
    served.call("plugins.install", {"path": str(built("gain"))})
    served.call("player.enqueue", {"items": [track(30.0)]})
    served.call("player.play")
    wait_for(lambda: _frames(served) > 48000, timeout=30)
    served.call("chain.insert", {"index": 0, "spec": f"{GAIN}:gain"})
    served.call("player.seek", {"seconds": 10.0})
    for _ in range(200):
        served.call("player.status")
    status = served.call("player.status")
    assert status["state"] == "playing" and status["output"] == "device"
    assert len(status["chain"]) == 1
