"""http-source over a real HTTP server on loopback: an M3U index, passthrough streams decoded by
the wav-decoder plugin, and decoder seeks that become Range requests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stellatune.errors import PluginError, PluginErrorCode

HTTP_SOURCE = "dev.stellatune.example.http-source"
WAV = "dev.stellatune.example.wav-decoder"

pytestmark = pytest.mark.slow  # Python components (cached after the first build)


@pytest.fixture
def library(tmp_path: Path, tone) -> Path:
    root = tmp_path / "library"
    (root / "music").mkdir(parents=True)
    sf.write(root / "music" / "dawn.wav", tone(9600, 2), 48000, subtype="PCM_16")
    sf.write(root / "music" / "dusk.wav", tone(4800, 1), 48000, subtype="PCM_16")
    (root / "music" / "index.m3u").write_text(
        "#EXTM3U\n#EXTINF:0.2,Ada - Dawn Chorus\ndawn.wav\n#EXTINF:0.1,Dusk\ndusk.wav\n"
    )
    (root / "secret.wav").write_bytes((root / "music" / "dusk.wav").read_bytes())
    return root


def _open_track(executor, server, path: str):
    executor.host_imports(HTTP_SOURCE).grants.add_http_host(server.endpoint)
    source = executor.source(HTTP_SOURCE, "http")
    source.apply_config({"base_url": server.url("/music/")})
    return source, source.open_stream({"path": path})


def test_lists_the_servers_index_and_decodes_a_track_after_a_ranged_seek(install, executor, media_server, library):
    install("http-source")
    install("wav-decoder")
    server = media_server(library)
    executor.host_imports(HTTP_SOURCE).grants.add_http_host(server.endpoint)
    source = executor.source(HTTP_SOURCE, "http")
    source.apply_config({"base_url": server.url("/music/")})

    listing = source.list_items({"query": "dawn"})
    assert listing["total"] == 1
    assert listing["items"][0] == {
        "id": "dawn.wav",
        "path": "dawn.wav",
        "title": "Dawn Chorus",
        "artist": "Ada",
        "duration_ms": 200,
        "ext": "wav",
    }
    assert ("/music/index.m3u", None, 200) in server.requests

    opened = source.open_stream({"path": "dawn.wav"})
    assert opened.passthrough and opened.ext_hint == "wav"
    expected, _ = sf.read(library / "music" / "dawn.wav", dtype="float32")
    with executor.decoder(WAV, "wav").open(opened.stream, opened.ext_hint) as session:
        assert session.read_pcm_f32(100).frames.shape == (100, 2)
        session.seek_ms(150)  # frame 7200: bytes 44 + 7200 * 4 of the file
        tail = []
        while True:
            chunk = session.read_pcm_f32(1000)
            tail.append(chunk.frames)
            if chunk.eof:
                break
    decoded = np.concatenate(tail)
    assert np.array_equal(decoded, expected[7200:])
    data_start = _data_offset(library / "music" / "dawn.wav")
    assert ("/music/dawn.wav", f"bytes={data_start + 7200 * 4}-", 206) in server.requests


def test_a_server_without_ranges_makes_the_seek_unsupported_and_keeps_the_position(
    install, executor, media_server, library
):
    install("http-source")
    install("wav-decoder")
    server = media_server(library, ranges=False)
    _source, opened = _open_track(executor, server, "dusk.wav")
    expected, _ = sf.read(library / "music" / "dusk.wav", dtype="float32")
    with executor.decoder(WAV, "wav").open(opened.stream, opened.ext_hint) as session:
        first = session.read_pcm_f32(1000).frames
        with pytest.raises(PluginError) as caught:
            session.seek_ms(50)
        assert caught.value.code is PluginErrorCode.UNSUPPORTED
        assert "206" in caught.value.message
        after = session.read_pcm_f32(1000).frames  # the stream did not move
    assert np.array_equal(first[:, 0], expected[:1000]) and np.array_equal(after[:, 0], expected[1000:2000])
    assert [r[2] for r in server.requests if r[1]] == [200]  # the server answered the Range with the whole file


def test_locations_outside_the_library_are_refused_by_the_plugin(install, executor, media_server, library):
    install("http-source")
    server = media_server(library)
    source, _opened = _open_track(executor, server, "dusk.wav")
    for location in ("../secret.wav", f"http://{server.endpoint}/secret.wav"):
        with pytest.raises(PluginError) as caught:
            source.open_stream({"path": location})
        assert caught.value.code is PluginErrorCode.DENIED
    assert not any(r[0] == "/secret.wav" for r in server.requests)


def _data_offset(path: Path) -> int:
    """Where the samples of a canonical WAV start (after the RIFF, fmt and data headers)."""
    raw = path.read_bytes()
    return raw.index(b"data") + 8
