"""After shutdown()/close(): WasmPluginRuntime, ComponentExecutor and Pipeline refuse every
operation with RuntimeStateError, shut down idempotently, and warn (ResourceWarning) when
collected without it."""

import gc

import numpy as np
import pytest

from stellatune.compose import Pipeline
from stellatune.errors import RuntimeStateError
from stellatune.executor import ComponentExecutor
from stellatune.runtime import DesiredState, WasmPluginRuntime


def test_a_shut_down_runtime_refuses_operations(plugins_dir, host):
    rt = WasmPluginRuntime(plugins_dir, host)
    rt.sync_plugins()
    rt.shutdown()
    assert rt.shutdown() == []  # idempotent
    for call in (
        rt.sync_plugins,
        lambda: rt.unload("dev.test.a"),
        lambda: rt.set_desired_state("dev.test.a", DesiredState.DISABLED),
        lambda: rt.replace_desired_states({}),
    ):
        with pytest.raises(RuntimeStateError, match=f"runtime of {plugins_dir} is shut down"):
            call()
    assert rt.is_shut_down and rt.active_plugins() == []  # reads keep working


def test_an_unshut_runtime_warns_when_collected(plugins_dir, opened_by_tests):
    rt = WasmPluginRuntime(plugins_dir)
    opened_by_tests.forget(rt)
    with pytest.warns(ResourceWarning, match=f"unclosed <WasmPluginRuntime {plugins_dir}>"):
        del rt
        gc.collect()


def test_a_shut_down_executor_refuses_operations(tmp_path):
    ex = ComponentExecutor(cache_dir=tmp_path / "cache")
    ex.shutdown()
    ex.shutdown()  # idempotent
    for call in (
        lambda: ex.dsp("dev.test.a", "main"),
        lambda: ex.decoder("dev.test.a", "main"),
        lambda: ex.host_imports("dev.test.a"),
        lambda: ex.activate(None, []),
    ):
        with pytest.raises(RuntimeStateError, match=r"ComponentExecutor .* shut down"):
            call()


def test_an_unshut_executor_warns_when_collected(tmp_path, opened_by_tests):
    ex = ComponentExecutor(cache_dir=tmp_path / "cache")
    opened_by_tests.forget(ex)
    with pytest.warns(ResourceWarning, match="unclosed <ComponentExecutor"):
        del ex
        gc.collect()


def test_a_closed_pipeline_refuses_operations(plugins_dir):
    board = Pipeline([], plugins_dir=plugins_dir)
    x = np.zeros((64, 2), dtype=np.float32)
    np.testing.assert_array_equal(board.process(x, 48000), x)
    board.close()
    board.close()  # idempotent
    for call in (
        lambda: board.process(x, 48000),
        lambda: board.play(x, sample_rate=48000),
        lambda: board.chain(48000, 2),
    ):
        with pytest.raises(RuntimeStateError, match=r"Pipeline .*closed"):
            call()
