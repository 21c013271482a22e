"""A misbehaving plugin is contained: traps, endless loops, memory hogs and failing host imports
raise our errors, discard only the broken instance, and leave the runtime usable."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import wasmtime.component._enter

from stellatune.errors import PluginTimeout, PluginTrap, RuntimeStateError
from stellatune.executor import AudioSpec, ComponentExecutor, GrantedHostServices, InstanceLimits
from stellatune.runtime import WasmPluginRuntime

PYGAIN = "dev.stellatune.example.pygain"
FOLDER = "dev.stellatune.example.folder-source"
SPEC = AudioSpec(48000, 2)

# These build Python components (cached after the first run).
pytestmark = pytest.mark.slow


def test_a_trap_raises_plugin_trap_and_only_that_processor_is_lost(install, executor, hooks):
    install("pygain")
    dsp = executor.dsp(PYGAIN, "pygain")
    survivor = dsp.create(SPEC, '{"gain_db": -6}')
    doomed = dsp.create(SPEC)
    with pytest.raises(PluginTrap) as caught:
        doomed.apply_config('{"trap": true}')
    assert caught.value.plugin_id == PYGAIN and "unreachable" in str(caught.value)
    with pytest.raises(RuntimeStateError, match="discarded after a failed call"):
        doomed.process(np.zeros((4, 2), np.float32))
    assert executor.live_instances(PYGAIN) == 1
    assert np.allclose(survivor.process(np.ones((4, 2), np.float32)), 10 ** (-6 / 20))
    fresh = dsp.create(SPEC)
    assert np.allclose(fresh.process(np.ones((4, 2), np.float32)), 1.0)
    log = executor.log_path(PYGAIN).read_text()
    assert "RuntimeError: trap requested by config" in log  # the guest's own traceback
    assert "instance discarded" in log


def test_an_endless_loop_is_interrupted_at_the_deadline(install, executor):
    install("pygain")
    dsp = executor.dsp(PYGAIN, "pygain")
    looping = dsp.create(SPEC)
    with pytest.raises(PluginTimeout, match="deadline"):
        looping.apply_config('{"hang": true}')
    assert executor.live_instances(PYGAIN) == 0
    assert np.allclose(dsp.create(SPEC).process(np.ones((2, 2), np.float32)), 1.0)


def test_a_store_over_its_memory_cap_cannot_instantiate(plugins_dir, tmp_path, compile_cache, built):
    from stellatune import package

    tight = ComponentExecutor(
        cache_dir=compile_cache, log_dir=tmp_path / "logs", limits=InstanceLimits(memory_bytes=4 << 20)
    )
    with WasmPluginRuntime(plugins_dir, tight) as rt:
        package.install_from_artifact(plugins_dir, built("pygain"))
        report = rt.sync_plugins()
        # The pre-flight instantiation already hits the cap: the plugin never becomes active.
        assert [t.detail.value for t in report.transitions] == ["install_failed"]
        assert "cannot be linked" in rt.status(PYGAIN).last_error
    tight.shutdown()


class _FlakyServices(GrantedHostServices):
    """Real host services whose file opens crash once, the way a buggy host service would."""

    def __init__(self, error: BaseException):
        super().__init__()
        self.crash_next: BaseException | None = error

    def for_plugin(self, plugin_id, root_dir, manifest):
        imports = super().for_plugin(plugin_id, root_dir, manifest)
        real_open = imports.open_stream

        def open_stream(request):
            error, self.crash_next = self.crash_next, None
            if error is not None:
                raise error
            return real_open(request)

        imports.open_stream = open_stream
        return imports


@pytest.mark.parametrize(
    "error", [ZeroDivisionError("host service bug"), KeyboardInterrupt()], ids=["exception", "ctrl-c"]
)
def test_a_crashing_host_import_traps_the_control_instance_which_is_rebuilt(
    plugins_dir, tmp_path, compile_cache, built, error
):
    from stellatune import package

    services = _FlakyServices(error)
    ex = ComponentExecutor(cache_dir=compile_cache, host_services=services, log_dir=tmp_path / "logs")
    music = tmp_path / "music"
    music.mkdir()
    (music / "playlist.m3u").write_text("#EXTM3U\n#EXTINF:3,Artist - Song\nsong.wav\n")
    try:
        with WasmPluginRuntime(plugins_dir, ex) as rt:
            package.install_from_artifact(plugins_dir, built("folder-source"))
            rt.sync_plugins()
            ex.host_imports(FOLDER).grants.add_file_root(music)
            source = ex.source(FOLDER, "folder")
            source.apply_config({"root": str(music)})
            # An Exception is the plugin call's failure; Ctrl-C is the caller's and comes back as such.
            expected = (
                (PluginTrap, "host import failed: ZeroDivisionError: host service bug")
                if isinstance(error, Exception)
                else (KeyboardInterrupt, None)
            )
            with pytest.raises(expected[0], match=expected[1]):
                source.list_items()
            # The failure stayed with this store: wasmtime-py's process-wide slot was not used.
            assert wasmtime.component._enter.LAST_EXCEPTION is None
            # The next call gets a fresh control instance, with the config it had.
            assert [i["title"] for i in source.list_items()["items"]] == ["Song"]
            assert ex.live_instances(FOLDER) == 1
    finally:
        ex.shutdown()
    log = (tmp_path / "logs" / f"{FOLDER}.log").read_text()
    assert log.count("folder-source: on-enable") == 2


def test_one_processor_used_from_many_threads_serialises_its_calls(install, executor):
    install("pygain")
    proc = executor.dsp(PYGAIN, "pygain").create(SPEC, '{"gain_db": 6}')
    results, errors = [], []

    def work(value):
        try:
            for _ in range(10):
                out = proc.process(np.full((64, 2), value, np.float32))
                results.append(bool(np.allclose(out, value * 10 ** (6 / 20))))
        except Exception as e:  # noqa: BLE001 - collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(v,)) for v in (0.1, 0.2, 0.3, 0.4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and results == [True] * 40
    assert proc.export_state() == '{"frames_processed": 2560}'


def test_disabling_while_another_thread_is_inside_the_plugin_waits_then_tears_everything_down(
    plugins_dir, tmp_path, compile_cache, built
):
    from stellatune import package
    from stellatune.runtime import DesiredState

    ex = ComponentExecutor(
        cache_dir=compile_cache,
        log_dir=tmp_path / "logs",
        limits=InstanceLimits(call_timeout_s=1.0, hook_timeout_s=1.0),
    )
    with WasmPluginRuntime(plugins_dir, ex) as rt:
        package.install_from_artifact(plugins_dir, built("pygain"))
        rt.sync_plugins()
        proc = ex.dsp(PYGAIN, "pygain").create(SPEC)
        outcome = []

        def hang():
            try:
                proc.apply_config('{"hang": true}')
            except (PluginTimeout, RuntimeStateError) as e:  # inside the call, or too late to enter
                outcome.append(type(e))

        worker = threading.Thread(target=hang)
        worker.start()
        rt.set_desired_state(PYGAIN, DesiredState.DISABLED)
        assert ex.live_instances(PYGAIN) == 0 and not ex.is_active(PYGAIN)
        worker.join()
        assert outcome in ([PluginTimeout], [RuntimeStateError])
    ex.shutdown()
