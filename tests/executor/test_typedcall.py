"""The typed-call layer (stellatune/executor/typedcall.py) is wasmtime-py's ``Func.__call__``
with each function's type read once: the same values come back, the same errors and traps come
out, for the functions of every plugin world.

Each scenario runs twice on real example plugins, each time in a fresh executor: once with every
guest call going through wasmtime-py's own ``Func.__call__``, once through the typed path. What
each call returned or raised is recorded as it happens (made plain at once: a resource handle
is consumed by the next call that passes it), and the two records must be equal.
"""

from __future__ import annotations

import gc
import http.server
import json
import urllib.parse
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import soundfile as sf
import wasmtime
from wasmtime.component import Component, ComponentInstanceType, FuncType, Record, ResourceAny, ValType, Variant
from wasmtime.component._types import VariantLikeType

from stellatune import package
from stellatune.errors import PluginError, PluginTrap
from stellatune.executor import AudioSpec, ComponentExecutor, FileHostStream, InstanceLimits
from stellatune.executor.engine import CompileCache, ComponentEngine
from stellatune.executor.typedcall import Signature, exports_of, freeze
from stellatune.executor.worlds import PACKAGE, _render
from stellatune.runtime import WasmPluginRuntime

from ..conftest import loopback_http, send_json
from .conftest import make_tone

GAIN = "dev.stellatune.example.gain"
PYGAIN = "dev.stellatune.example.pygain"
PASSTHROUGH = "dev.stellatune.example.passthrough-sink"
WAV = "dev.stellatune.example.wav-decoder"
FOLDER = "dev.stellatune.example.folder-source"
LRC = "dev.stellatune.example.lrc-lyrics"

Scenario = Callable[[ComponentExecutor], None]


def _plain(value: Any) -> Any:
    """A component value as comparable plain data."""
    if isinstance(value, Record):
        return {name: _plain(v) for name, v in vars(value).items()}
    if isinstance(value, Variant):
        return ("variant", value.tag, _plain(value.payload))
    if isinstance(value, ResourceAny):
        return ("resource", value.owned)
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    return value


def _reference(sig: Signature, store: Any, func: Any, *params: Any) -> Any:
    return func(store, *params)  # wasmtime-py's own Func.__call__


def _recording(call: Callable[..., Any], record: list[tuple[Any, ...]]) -> Callable[..., Any]:
    """``call`` (a ``Signature.call``), appending what each call returned or raised to ``record``."""

    def recorded(sig: Signature, store: Any, func: Any, *params: Any) -> Any:
        try:
            result = call(sig, store, func, *params)
        except Exception as e:
            record.append(("raised", type(e).__name__, str(e)))
            raise
        record.append(("returned", _plain(result)))
        return result

    return recorded


@contextmanager
def _fresh_executor(base: Path, compile_cache: Path, artifacts: list[Path]) -> Iterator[ComponentExecutor]:
    plugins = base / "plugins"
    for artifact in artifacts:
        package.install_from_artifact(plugins, artifact)
    executor = ComponentExecutor(
        cache_dir=compile_cache, log_dir=base / "logs", limits=InstanceLimits(call_timeout_s=3.0, hook_timeout_s=3.0)
    )
    try:
        with WasmPluginRuntime(plugins, executor) as runtime:
            report = runtime.sync_plugins()
            assert not report.errors, report.errors
            yield executor
    finally:
        executor.shutdown()


@pytest.fixture
def twice(
    tmp_path: Path, compile_cache: Path, built: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> Callable[[list[str], Scenario], list[tuple[Any, ...]]]:
    """``twice(examples, scenario)``: run ``scenario`` through wasmtime-py's calls, then through
    the typed ones; assert both records are equal and return the typed one."""
    typed = Signature.call

    def run(examples: list[str], scenario: Scenario) -> list[tuple[Any, ...]]:
        records = []
        for mode, call in (("reference", _reference), ("typed", typed)):
            record: list[tuple[Any, ...]] = []
            with monkeypatch.context() as patch:
                patch.setattr(Signature, "call", _recording(call, record))
                with _fresh_executor(tmp_path / mode, compile_cache, [built(e) for e in examples]) as executor:
                    scenario(executor)
            records.append(record)
        reference, typed_record = records
        assert reference, "the scenario made no guest call"
        assert typed_record == reference
        return typed_record

    return run


def _raises(error: type[BaseException], call: Callable[..., Any], *args: Any) -> None:
    with pytest.raises(error):
        call(*args)


# --- dsp ------------------------------------------------------------------------------------


def _dsp_scenario(plugin_id: str, type_id: str) -> Scenario:
    def scenario(executor: ComponentExecutor) -> None:
        proc = executor.dsp(plugin_id, type_id).create(AudioSpec(48000, 2), '{"gain_db": -6}')
        proc.supported_layouts()
        proc.output_channels()
        proc.plan_config({"gain_db": 3})
        proc.update_config({"gain_db": 3})
        proc.describe_hot_path()
        proc.describe_hot_path(AudioSpec(44100, 1))
        proc.process(make_tone(64, 2))
        state = proc.export_state()
        if state is not None:
            proc.import_state(state)
        _raises(PluginError, proc.apply_config, "not json")  # an err result
        _raises(PluginError, proc._slot.call, "apply-config-update-json", 5)  # lowering refuses an int
        _raises(PluginError, proc._slot.call, "output-channels", 1)  # one argument too many
        proc.close()

    return scenario


def test_dsp_calls_of_a_c_plugin_match_wasmtime_py(twice):
    record = twice(["gain"], _dsp_scenario(GAIN, "gain"))
    # The hot-path description came back as a value (option<core-module-spec>), not None.
    assert any(r[0] == "returned" and isinstance(r[1], dict) and "wasm-rel-path" in r[1] for r in record)
    assert [r[1] for r in record if r[0] == "raised"] == ["TypeError", "TypeError"]


@pytest.mark.slow
def test_dsp_calls_of_a_python_plugin_and_its_trap_match_wasmtime_py(twice):
    def scenario(executor: ComponentExecutor) -> None:
        _dsp_scenario(PYGAIN, "pygain")(executor)
        doomed = executor.dsp(PYGAIN, "pygain").create(AudioSpec(48000, 2))
        _raises(PluginTrap, doomed.apply_config, '{"trap": true}')
        doomed.close()

    record = twice(["pygain"], scenario)
    assert any(r[0] == "raised" and "unreachable" in r[2] for r in record)


# --- output sink ----------------------------------------------------------------------------


def test_output_sink_calls_match_wasmtime_py(twice):
    def scenario(executor: ComponentExecutor) -> None:
        sink = executor.output_sink(PASSTHROUGH, "passthrough")
        sink.list_targets()
        sink.negotiate_spec({"id": "default"}, AudioSpec(44100, 2))
        _raises(PluginError, sink.negotiate_spec, {"id": "default"}, AudioSpec(44100, 12))
        sink.describe_hot_path(AudioSpec(48000, 2))
        session = sink.open({"id": "default"}, AudioSpec(48000, 2), '{"max_accept": 100}')
        session.write(make_tone(300, 2))
        session.query_status()
        session.flush()
        session.reset()
        session.export_state()
        session.describe_hot_path()
        session.close()

    twice(["passthrough-sink"], scenario)


# --- decoder, source, lyrics (Python components) --------------------------------------------


def _write_music(folder: Path) -> Path:
    folder.mkdir(exist_ok=True)
    sf.write(folder / "one.wav", make_tone(960, 2), 48000, subtype="PCM_24")
    (folder / "playlist.m3u").write_text("#EXTM3U\n#EXTINF:0.02,Ada - First Light\none.wav\n")
    (folder / "bogus.wav").write_bytes(b"ID3" + bytes(100))
    return folder


@pytest.mark.slow
def test_decoder_calls_match_wasmtime_py(twice, tmp_path):
    music = _write_music(tmp_path / "music")

    def scenario(executor: ComponentExecutor) -> None:
        decoder = executor.decoder(WAV, "wav")
        with decoder.open(FileHostStream(music / "one.wav"), "wav") as session:
            session.info()
            session.metadata()  # records, lists, options and a tagged variant (an extra's value)
            session.read_pcm_f32(100)
            session.seek_ms(10)
            session.read_pcm_f32(1000)
            session.plan_config({})
            session.export_state()
        _raises(PluginError, decoder.open, FileHostStream(music / "bogus.wav"), "wav")

    twice(["wav-decoder"], scenario)


@pytest.mark.slow
def test_source_calls_match_wasmtime_py(twice, tmp_path):
    music = _write_music(tmp_path / "music")

    def scenario(executor: ComponentExecutor) -> None:
        executor.host_imports(FOLDER).grants.add_file_root(music)
        source = executor.source(FOLDER, "folder")
        source.apply_config({"root": str(music)})
        source.list_items({"query": "light"})
        passthrough = source.open_stream({"path": "one.wav"})  # a variant carrying a resource
        passthrough.stream.close()
        processed = source.open_stream({"path": "one.wav", "processed": True})
        processed.stream.read(100)
        processed.stream.close()
        _raises(PluginError, source.open_uri, "file:///etc/passwd")
        source.export_state()

    twice(["folder-source"], scenario)


class _Lrclib(http.server.BaseHTTPRequestHandler):
    """Two LRCLIB answers: a search hit and its lyrics."""

    def do_GET(self):  # noqa: N802 - http.server's naming
        path = urllib.parse.urlsplit(self.path).path
        if path == "/api/search":
            send_json(self, [{"id": 7, "trackName": "Night Drive", "artistName": "Bo"}])
        elif path == "/api/get/7":
            send_json(self, {"id": 7, "syncedLyrics": "[00:00.50]la la\n", "plainLyrics": None})
        else:
            self.send_error(404)

    def log_message(self, *args):
        pass


@pytest.fixture
def lrclib() -> Iterator[str]:
    with loopback_http(_Lrclib) as address:
        yield address


@pytest.mark.slow
def test_lyrics_calls_match_wasmtime_py(twice, lrclib):
    def scenario(executor: ComponentExecutor) -> None:
        executor.host_imports(LRC).grants.add_http_host(lrclib)
        lyrics = executor.lyrics(LRC, "lrc")
        lyrics.apply_config({"base_url": f"http://{lrclib}"})
        found = lyrics.search("night")  # a list of records
        lyrics.fetch(found[0].id)
        _raises(PluginError, lyrics.fetch, "99")

    record = twice(["lrc-lyrics"], scenario)
    assert ("returned", [{"id": "7", "title": "Night Drive", "artist": "Bo"}]) in record


# --- frozen types ---------------------------------------------------------------------------


def _same_structure(original: ValType, frozen: ValType) -> None:
    """``frozen`` renders as ``original`` and, at every variant, option and result, lifts and
    lowers as tagged or untagged as wasmtime-py decides for ``original``."""
    assert _render(frozen) == _render(original)
    if isinstance(original, VariantLikeType):
        assert isinstance(frozen, VariantLikeType)
        assert frozen._tagged() == original._tagged()
        for (name, a), (frozen_name, b) in zip(original._cases(), frozen._cases(), strict=True):
            assert name == frozen_name and (a is None) == (b is None)
            if a is not None and b is not None:
                _same_structure(a, b)


_PYTHON = pytest.mark.slow  # builds a Python component (cached after the first run)


@pytest.mark.parametrize(
    "example",
    [
        "gain",
        "passthrough-sink",
        pytest.param("wav-decoder", marks=_PYTHON),
        pytest.param("folder-source", marks=_PYTHON),
        pytest.param("lrc-lyrics", marks=_PYTHON),
    ],
)
def test_every_exported_function_freezes_to_its_own_type(example, built, tmp_path, compile_cache):
    installed = package.install_from_artifact(tmp_path / "plugins", built(example))
    manifest = json.loads(installed.manifest_path.read_text())
    engine = ComponentEngine()
    try:
        checked = 0
        for entry in manifest["components"]:
            _, component = CompileCache(engine, compile_cache).load(installed.root_dir / entry["path"])
            for name, ext in component.type.exports(engine.engine).items():
                instance = ext.ty
                if not name.startswith(PACKAGE + "/") or not isinstance(instance, ComponentInstanceType):
                    continue
                for item in instance.exports(engine.engine).values():
                    fty = item.ty
                    if isinstance(fty, FuncType):
                        _check_frozen(fty)
                        checked += 1
        assert checked >= 5
    finally:
        engine.close()


def _check_frozen(fty: FuncType) -> None:
    params = [t for _, t in fty.params]
    frozen = [freeze(t) for t in params]
    for original, ice in zip(params, frozen, strict=True):
        _same_structure(original, ice)
    result = fty.result
    if result is not None:
        _same_structure(result, freeze(result))


def test_an_export_table_goes_with_its_component():
    cfg = wasmtime.Config()
    cfg.wasm_component_model = True
    component = Component(wasmtime.Engine(cfg), "(component)")
    gone = weakref.ref(component)
    assert exports_of(component) is exports_of(component)
    del component
    gc.collect()
    assert gone() is None
