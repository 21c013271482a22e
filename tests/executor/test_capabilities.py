"""Every capability of the example plugins, called through the typed wrappers."""

from __future__ import annotations

import http.server
import json
import urllib.parse
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stellatune.errors import PluginError, PluginErrorCode, RuntimeStateError
from stellatune.executor import (
    AudioSpec,
    ConfigRejected,
    ConfigUpdateMode,
    FileHostStream,
    decoder_candidates,
    open_decoder,
)

from ..conftest import loopback_http, send_json

WAV = "dev.stellatune.example.wav-decoder"
FOLDER = "dev.stellatune.example.folder-source"
LRC = "dev.stellatune.example.lrc-lyrics"
SINK = "dev.stellatune.example.wav-sink"
PYGAIN = "dev.stellatune.example.pygain"

# These build Python components (cached after the first run).
pytestmark = pytest.mark.slow


# --- decoder --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "subtype,tolerance",
    [("PCM_16", 1 / 32768), ("PCM_24", 1 / 2**23), ("PCM_32", 1 / 2**31), ("FLOAT", 0.0), ("DOUBLE", 1e-7)],
)
def test_wav_decoder_decodes_every_pcm_format(install, executor, wav_file, tone, subtype, tolerance):
    install("wav-decoder")
    signal = tone(4800, 2)
    path = wav_file(f"t-{subtype}.wav", signal, subtype)
    with executor.decoder(WAV, "wav").open(FileHostStream(path), "wav") as session:
        info = session.info()
        assert (info.sample_rate, info.channels, info.duration_ms, info.seekable) == (48000, 2, 100, True)
        chunks = []
        while True:
            chunk = session.read_pcm_f32(1000)
            chunks.append(chunk.frames)
            if chunk.eof:
                break
    decoded = np.concatenate(chunks)
    assert decoded.dtype == np.float32 and decoded.shape == signal.shape
    assert np.max(np.abs(decoded - signal)) <= tolerance


def test_wav_decoder_seeks_and_reports_metadata(install, executor, wav_file, tone):
    install("wav-decoder")
    signal = tone(4800, 1)
    path = wav_file("mono.wav", signal, "PCM_24")
    session = executor.decoder(WAV, "wav").open(FileHostStream(path), "wav")
    session.seek_ms(50)
    assert np.allclose(session.read_pcm_f32(10).frames[:, 0], signal[2400:2410, 0], atol=1e-6)
    meta = session.metadata()
    assert (meta.format.codec, meta.format.container, meta.format.channels) == ("pcm_s24", "wav", 1)
    assert meta.duration_ms == 100 and meta.extras == {"bits-per-sample": 24}
    session.close()
    assert executor.live_instances(WAV) == 0


def test_wav_decoder_refuses_what_is_not_wav(install, executor, tmp_path):
    install("wav-decoder")
    bogus = tmp_path / "x.wav"
    bogus.write_bytes(b"ID3" + bytes(100))
    with pytest.raises(PluginError) as caught:
        executor.decoder(WAV, "wav").open(FileHostStream(bogus), "wav")
    assert caught.value.code is PluginErrorCode.INVALID_ARG and "RIFF" in caught.value.message
    assert executor.live_instances(WAV) == 0  # the failed session's instance is gone too


def test_a_session_whose_instance_never_starts_closes_its_stream(install, runtime, executor, wav_file, tone):
    install("wav-decoder")
    decoder = executor.decoder(WAV, "wav")
    runtime.unload(WAV)  # the handle outlives its plugin: no instance can be made
    stream = FileHostStream(wav_file("t.wav", tone(480, 2), "FLOAT"))
    with pytest.raises(RuntimeStateError):
        decoder.open(stream, "wav")
    assert stream.closed  # the session owned it, so its file is not left open


def test_a_track_that_cannot_be_opened_is_a_plugin_error(tmp_path):
    with pytest.raises(PluginError) as caught:
        FileHostStream(tmp_path / "missing.wav")
    assert caught.value.code is PluginErrorCode.NOT_FOUND and "missing.wav" in caught.value.message


def test_decoder_selection_ranks_by_extension_and_falls_back_for_local_files(
    install, runtime, executor, wav_file, tone
):
    install("wav-decoder")
    path = wav_file("track.bin", tone(480, 2), "FLOAT")  # an extension no decoder claims
    assert decoder_candidates(runtime, "bin", local_file=False) == []
    candidates = decoder_candidates(runtime, "bin", local_file=True)
    assert [c.plugin_id for c in candidates] == [WAV]
    assert [c.plugin_id for c in decoder_candidates(runtime, ".WAV", local_file=False)] == [WAV]
    session, chosen = open_decoder(executor, candidates, lambda: FileHostStream(path), "bin")
    assert chosen.type_id == "wav" and session.info().channels == 2
    session.close()
    with pytest.raises(PluginError, match="no decoder could open"):
        open_decoder(executor, [], lambda: FileHostStream(path), "bin")


# --- source ---------------------------------------------------------------------------------


@pytest.fixture
def music(tmp_path, wav_file, tone) -> Path:
    folder = tmp_path / "music"
    folder.mkdir()
    sf.write(folder / "one.wav", tone(960, 2), 48000, subtype="PCM_16")
    sf.write(folder / "two.wav", tone(480, 1), 48000, subtype="FLOAT")
    (folder / "playlist.m3u").write_text(
        "#EXTM3U\n#EXTINF:0.02,Ada - First Light\none.wav\n#EXTINF:0.01,Second\ntwo.wav\n"
    )
    return folder


def test_folder_source_lists_and_opens_passthrough_and_processed_streams(install, executor, music):
    install("folder-source")
    install("wav-decoder")
    executor.host_imports(FOLDER).grants.add_file_root(music)
    source = executor.source(FOLDER, "folder")
    source.apply_config({"root": str(music)})
    listing = source.list_items({"query": "light"})
    assert listing["total"] == 1
    assert listing["items"][0] | {} == {
        "id": "one.wav",
        "path": "one.wav",
        "title": "First Light",
        "artist": "Ada",
        "duration_ms": 20,
        "ext": "wav",
    }

    opened = source.open_stream({"path": "one.wav"})
    assert opened.passthrough and opened.ext_hint == "wav"
    assert opened.stream.read(4) == b"RIFF"
    opened.stream.seek(0, "start")
    # The passthrough stream now belongs to the caller: hand it on to a decoder.
    with executor.decoder(WAV, "wav").open(opened.stream, opened.ext_hint) as session:
        assert session.read_pcm_f32(2000).frames.shape == (960, 2)

    processed = source.open_stream({"path": "two.wav", "processed": True})
    assert not processed.passthrough
    data = b"".join(iter(lambda: processed.stream.read(100), b""))
    assert data == (music / "two.wav").read_bytes()
    with pytest.raises(PluginError) as caught:
        processed.stream.seek(0, "start")
    assert caught.value.code is PluginErrorCode.UNSUPPORTED
    processed.stream.close()

    assert source.open_uri(f"file://{music}/two.wav").passthrough
    with pytest.raises(PluginError) as caught:
        source.open_uri("file:///etc/passwd")
    assert caught.value.code is PluginErrorCode.DENIED
    assert json.loads(source.export_state()) == {"opened": 3}
    assert executor.live_instances(FOLDER) == 1  # one long-lived control instance for all of it


def test_the_hosts_grants_bind_the_source(install, executor, music):
    install("folder-source")
    source = executor.source(FOLDER, "folder")
    source.apply_config({"root": str(music)})  # the plugin is willing, the host has not granted it
    with pytest.raises(PluginError) as caught:
        source.list_items()
    assert caught.value.code is PluginErrorCode.DENIED


# --- lyrics ---------------------------------------------------------------------------------


class _LrclibHandler(http.server.BaseHTTPRequestHandler):
    """A small LRCLIB-shaped API on loopback, serving .lrc files from a folder."""

    root: Path

    def do_GET(self):  # noqa: N802 - http.server's naming
        url = urllib.parse.urlsplit(self.path)
        files = sorted(self.root.glob("*.lrc"))
        if url.path == "/api/search":
            q = urllib.parse.parse_qs(url.query).get("q", [""])[0].lower()
            body = [
                {"id": i, "trackName": f.stem.split(" - ")[1], "artistName": f.stem.split(" - ")[0]}
                for i, f in enumerate(files)
                if q in f.stem.lower()
            ]
        elif url.path.startswith("/api/get/") and url.path[9:].isdigit() and int(url.path[9:]) < len(files):
            f = files[int(url.path[9:])]
            body = {"id": int(url.path[9:]), "syncedLyrics": f.read_text(), "plainLyrics": None}
        else:
            self.send_error(404)
            return
        send_json(self, body)

    def log_message(self, *args):
        pass


@pytest.fixture
def lrclib(tmp_path):
    folder = tmp_path / "lrc"
    folder.mkdir()
    (folder / "Ada - First Light.lrc").write_text("[00:01.00]hello\n[00:02.50]world\n")
    (folder / "Bo - Night Drive.lrc").write_text("[00:00.50]la la\n")
    handler = type("H", (_LrclibHandler,), {"root": folder})
    with loopback_http(handler) as address:
        yield address


def test_lrc_lyrics_searches_and_fetches_over_the_hosts_http(install, executor, lrclib):
    install("lrc-lyrics")
    executor.host_imports(LRC).grants.add_http_host(lrclib)
    lyrics = executor.lyrics(LRC, "lrc")
    lyrics.apply_config({"base_url": f"http://{lrclib}"})
    found = lyrics.search("night")
    assert [(c.title, c.artist) for c in found] == [("Night Drive", "Bo")]
    assert lyrics.fetch(found[0].id) == "[00:00.50]la la\n"
    with pytest.raises(PluginError) as caught:
        lyrics.fetch("99")
    assert caught.value.code is PluginErrorCode.IO  # the server's 404, through fetch-json


def test_lrc_lyrics_cannot_reach_hosts_it_was_not_granted(install, executor, lrclib):
    install("lrc-lyrics")
    lyrics = executor.lyrics(LRC, "lrc")
    lyrics.apply_config({"base_url": f"http://{lrclib}"})
    with pytest.raises(PluginError) as caught:
        lyrics.search("ada")
    assert caught.value.code is PluginErrorCode.DENIED


# --- output sink ----------------------------------------------------------------------------


def test_wav_sink_control_calls_share_one_instance_and_null_target_accepts_partially(install, executor, tone):
    install("wav-sink")
    sink = executor.output_sink(SINK, "wav-file")
    assert [t["id"] for t in sink.list_targets()] == ["file", "null"]
    negotiated = sink.negotiate_spec({"id": "null"}, AudioSpec(44100, 12))
    assert (negotiated.spec, negotiated.prefer_track_rate) == (AudioSpec(44100, 8), True)
    assert sink.describe_hot_path(AudioSpec(44100, 2)) is None
    assert executor.live_instances(SINK) == 1
    with pytest.raises(PluginError) as caught:
        sink.negotiate_spec({"id": "speakers"}, AudioSpec(44100, 2))
    assert caught.value.code is PluginErrorCode.NOT_FOUND

    session = sink.open({"id": "null"}, AudioSpec(48000, 2), '{"max_chunk_frames": 300}')
    assert executor.live_instances(SINK) == 2
    assert session.write(tone(1000, 2)) == 300  # fewer than offered is not an error
    assert session.query_status().running
    session.flush()
    session.reset()
    assert json.loads(session.export_state()) == {"frames_written": 300}
    session.close()
    assert executor.live_instances(SINK) == 1


def test_wav_sink_records_a_file_through_its_sidecar(install, executor, tmp_path, tone):
    install("wav-sink")
    out = tmp_path / "recording.wav"
    signal = tone(2000, 2)
    session = executor.output_sink(SINK, "wav-file").open({"id": "file", "path": str(out)}, AudioSpec(48000, 2))
    offset = 0
    while offset < len(signal):
        offset += session.write(signal[offset : offset + 700])
    session.flush()
    # The plugin holds a host lock per file while recording: a second session must wait.
    with pytest.raises(PluginError) as caught:
        executor.output_sink(SINK, "wav-file").open({"id": "file", "path": str(out)}, AudioSpec(48000, 2))
    assert caught.value.code is PluginErrorCode.TIMEOUT
    session.close()
    written, rate = sf.read(out, dtype="float32")
    assert rate == 48000 and np.array_equal(written, signal)
    again = executor.output_sink(SINK, "wav-file").open({"id": "file", "path": str(out)}, AudioSpec(48000, 1))
    again.close()
    assert sf.info(out).channels == 1


# --- config plans ---------------------------------------------------------------------------


def test_config_update_hot_applies_recreates_with_state_or_rejects(install, executor):
    install("pygain")
    proc = executor.dsp(PYGAIN, "pygain").create(AudioSpec(48000, 2))
    ones = np.ones((10, 2), np.float32)
    proc.process(ones)

    assert proc.update_config({"gain_db": 20}) is ConfigUpdateMode.HOT_APPLY
    assert np.allclose(proc.process(ones), 10.0)

    assert proc.update_config({"gain_db": 20, "invert": True}) is ConfigUpdateMode.RECREATE
    assert np.allclose(proc.process(ones), -10.0)
    assert json.loads(proc.export_state()) == {"frames_processed": 30}  # carried into the new instance
    assert executor.live_instances(PYGAIN) == 1  # the old one is gone

    with pytest.raises(ConfigRejected, match="outside"):
        proc.update_config({"gain_db": 99, "invert": True})
    assert np.allclose(proc.process(ones), -10.0)  # the old config is still in force
    assert json.loads(proc.config_json) == {"gain_db": 20, "invert": True}

    with pytest.raises(PluginError) as caught:
        proc.update_config("not json")
    assert caught.value.code is PluginErrorCode.INVALID_ARG


def test_dsp_processor_describes_its_layouts_and_keeps_frame_count(install, executor):
    install("pygain")
    proc = executor.dsp(PYGAIN, "pygain").create(AudioSpec(48000, 6), '{"gain_db": -20}')
    assert proc.supported_layouts() == 0xFFFFFFFF and proc.output_channels() == 0
    assert proc.describe_hot_path() is None
    out = proc.process(np.ones((7, 6), np.float32))
    assert out.shape == (7, 6) and np.allclose(out, 0.1)
    with pytest.raises(PluginError, match="created for 6 channels"):
        proc.process(np.ones((7, 2), np.float32))
