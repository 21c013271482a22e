"""The ``Stage`` protocol, refusal after close() and the unclosed-stage ResourceWarning, for
both kinds of stage (wasm and native hot path, component path)."""

import gc
import re

import numpy as np
import pytest

from stellatune.abi import Role
from stellatune.engine import Chain, ComponentStage, HotPathStage, Stage
from stellatune.errors import RuntimeStateError

RATE = 48000


class _Spy:
    """Stands in for a closed hot-path stage's core: reading is fine, calling the guest is not."""

    def __init__(self, core):
        self._core = core

    def __getattr__(self, name):
        if name in ("set_param_now", "reset_now"):
            pytest.fail(f"a closed stage called {name} on its dropped guest")
        return getattr(self._core, name)


def _component() -> ComponentStage:
    return ComponentStage(
        name="doubler",
        role=Role.DSP_TRANSFORM,
        sample_rate=RATE,
        channels=2,
        process=lambda block: block * 2,
        fallback_reason="test",
        configure=lambda config: None,
        reset=lambda: None,
    )


@pytest.fixture(params=["wasm", "native", "component"])
def make_stage(request, kernels, spec):
    def make():
        if request.param == "wasm":
            return HotPathStage.from_wasm(kernels["gain"], spec(), RATE, 2, {"gain": 2.0})
        if request.param == "native":
            return HotPathStage.from_native(kernels["gain.so"], spec(), RATE, 2, {"gain": 2.0})
        return _component()

    return make


def test_both_kinds_satisfy_the_stage_protocol(make_stage, noise):
    stage = make_stage()
    try:
        assert isinstance(stage, Stage)
        assert stage.route in ("hot-path", "native", "component") and not stage.closed
        x = noise(256)
        np.testing.assert_allclose(Chain([stage], RATE, 2).process(x), x * 2, rtol=1e-6)
    finally:
        stage.close()


def test_every_call_on_a_closed_stage_is_refused(make_stage, noise):
    stage = make_stage()
    pipe = Chain([stage], RATE, 2)
    pipe.process(noise(128))
    before = stage.stats()
    stage.close()
    stage.close()  # idempotent
    assert stage.closed
    if isinstance(stage, HotPathStage):
        stage._core = _Spy(stage._core)  # nothing below may reach the guest
    calls = [
        lambda: stage.set_param("gain", 1.0),
        lambda: stage.configure({"gain": 1.0}),
        lambda: stage.bypass(True),
        stage.reset,
        lambda: pipe.process(noise(128)),
        lambda: Chain([stage], RATE, 2),
    ]
    if isinstance(stage, ComponentStage):
        calls.append(lambda: stage.run(noise(128)))
    for call in calls:
        with pytest.raises(RuntimeStateError, match=f"{stage.name}.*closed"):
            call()
    assert stage.fault is None  # still readable
    assert stage.stats() == before


def test_a_closed_hot_path_stage_refuses_set_param_even_for_an_unknown_name(kernels, spec):
    stage = HotPathStage.from_wasm(kernels["gain"], spec(), RATE, 2)
    stage.close()
    with pytest.raises(RuntimeStateError, match=r"gain\.wasm: cannot set_param: the stage is closed"):
        stage.set_param("nope", 1.0)


def test_an_unclosed_stage_warns_when_collected(make_stage, opened_by_tests):
    stage = make_stage()
    text = repr(stage)
    opened_by_tests.forget(stage)  # let it go unclosed, on purpose
    with pytest.warns(ResourceWarning, match=re.escape(f"unclosed {text}")):
        del stage
        gc.collect()


def test_a_closed_stage_does_not_warn(make_stage, recwarn):
    stage = make_stage()
    stage.close()
    del stage
    gc.collect()
    assert not [w for w in recwarn if issubclass(w.category, ResourceWarning)]
