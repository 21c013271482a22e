"""update_config -> recreate: the new stage gets the old one's state (the hot path's optional
state-carry exports, the component's export/import-state-json) and fades in over crossfade_ms."""

from __future__ import annotations

import json

import numpy as np
import soundfile

import stellatune
from stellatune.compose import build_dsp_stage
from stellatune.engine import Chain

from .conftest import PYGAIN, RATE

DELAY = "dev.stellatune.example.delay"
DELAY_CFG = {"time_ms": 250, "feedback": 0.8, "mix": 0.5, "max_delay_ms": 1000}


def test_recreate_carries_state_the_echo_tail_goes_on_across_the_swap(runtime, install, tmp_path):
    """Impulse in, the delay recreated mid-tail (max_delay_ms sizes its line): the echoes after
    the swap are exactly those of a delay that was never swapped."""
    install("delay")
    first = np.zeros((int(1.1 * RATE), 2), np.float32)
    first[0] = 1.0
    second = np.zeros((3 * RATE, 2), np.float32)
    out_path = tmp_path / "out.wav"
    spec = f"{DELAY}:delay:" + json.dumps(DELAY_CFG)
    events = []
    with stellatune.Player(runtime=runtime, output=f"file:{out_path}", offline=True) as p:
        p.subscribe(events.append, kinds=["config-applied"])
        p.set_chain([spec])
        p.enqueue((first, RATE))
        p.play()
        assert p.wait(timeout=60)  # the tail is in the delay line now
        assert p.chain()[0]["route"] == "hot-path"
        assert p.update_config(0, {"max_delay_ms": 600}) == "recreate"
        p.enqueue((second, RATE))
        assert p.wait(timeout=60)
    out, _ = soundfile.read(str(out_path), dtype="float32", always_2d=True)
    with stellatune.Pipeline([spec], runtime=runtime) as board:
        ref = board.process(np.concatenate([first, second]), RATE)
    assert out.shape == ref.shape
    np.testing.assert_allclose(out, ref, atol=1e-6)
    d = RATE // 4
    echoes = [float(out[k * d, 0]) for k in range(5, 16)]  # after the swap at 1.1 s
    np.testing.assert_allclose(echoes, [0.5 * 0.8 ** (k - 1) for k in range(5, 16)], rtol=1e-4)
    assert [e["mode"] for e in events] == ["recreate"]


def test_crossfade_has_no_step_larger_than_a_bound(runtime, install, executor):
    """Old and new stage on the same input for 10 ms, equal-power mixed: a swap from x (dry) to
    -x (an echo half a period late) is a smooth pass, where a cut jumps by up to 2|x|."""
    install("delay")
    cfg = {"time_ms": 1.25, "feedback": 0.0, "mix": 0.0, "max_delay_ms": 1000}  # 60 frames
    old = build_dsp_stage(runtime, executor, DELAY, "delay", cfg, RATE, 2)
    new = build_dsp_stage(runtime, executor, DELAY, "delay", {**cfg, "mix": 1.0, "max_delay_ms": 500}, RATE, 2)
    cut = build_dsp_stage(runtime, executor, DELAY, "delay", {**cfg, "mix": 1.0}, RATE, 2)
    try:
        t = np.arange(RATE // 2) / RATE
        x = np.repeat((0.5 * np.sin(2 * np.pi * 400 * t)).astype(np.float32)[:, None], 2, axis=1)
        a, b = x[: RATE // 4 + 37], x[RATE // 4 + 37 :]
        head = Chain([old], RATE, 2, block_frames=128).process(a)
        faded = Chain([new], RATE, 2, block_frames=128)
        c_chain, index = faded._places[id(new)]
        fade = round(0.010 * RATE)
        c_chain.set_crossfade(index, old._core, fade, True)
        tail = faded.process(b)
        assert c_chain.xfade_done and c_chain.xfade_carry_rc == 0
        y = np.concatenate([head, tail])
        steps = np.abs(np.diff(y[:, 0]))
        natural = 0.5 * 2 * np.pi * 400 / RATE  # the sine's own largest step
        assert steps.max() < 1.6 * natural
        np.testing.assert_allclose(tail[fade:], -b[fade:], atol=1e-5)  # then the new stage alone
        cut_tail = Chain([cut], RATE, 2, block_frames=128).process(b)
        assert np.abs(np.diff(np.concatenate([head, cut_tail])[:, 0])).max() > 5 * natural
    finally:
        for s in (old, new, cut):
            s.close()


def test_pygain_recreate_carries_frames_processed(runtime, install, noise):
    """The component path: pygain plans recreate when invert changes; the new instance gets the
    old one's exported state (frames_processed goes on counting)."""
    install("pygain")
    x = noise(6000)
    with stellatune.Player(runtime=runtime, output="null", offline=True) as p:
        p.set_chain([f"{PYGAIN}:pygain"])
        p.enqueue((x, RATE))
        p.play()
        assert p.wait(timeout=60)
        entry = p._live.entries[0]
        before = json.loads(entry.processor.export_state())["frames_processed"]
        assert before == len(x)
        assert p.update_config(0, {"invert": True}) == "recreate"
        assert json.loads(entry.processor.export_state())["frames_processed"] == before
        p.enqueue((x, RATE))
        assert p.wait(timeout=60)
        after = json.loads(p._live.entries[0].processor.export_state())["frames_processed"]
    assert after == 2 * len(x)


def test_a_component_recreate_crossfades_from_the_old_instance(runtime, install):
    """pygain recreates when invert changes: for crossfade_frames the old instance runs beside
    the new one, equal-power gains take +x to -x without a step, then the old one is gone."""
    from stellatune.executor import AudioSpec

    install("pygain")
    executor = runtime.host
    fade = 480
    with executor.dsp(PYGAIN, "pygain").create(AudioSpec(RATE, 2)) as processor:
        ones = np.ones((128, 2), np.float32)
        np.testing.assert_array_equal(processor.process(ones), ones)
        assert executor.live_instances(PYGAIN) == 1
        assert processor.update_config({"invert": True}, crossfade_frames=fade).value == "recreate"
        assert executor.live_instances(PYGAIN) == 2  # the old one fades out beside the new one
        out = np.concatenate([processor.process(ones) for _ in range(6)])[:, 0]
        t = np.minimum(np.arange(len(out)) / fade, 1.0)
        np.testing.assert_allclose(out, np.cos(t * np.pi / 2) - np.sin(t * np.pi / 2), atol=1e-6)
        assert np.abs(np.diff(out)).max() < 0.01  # a hard cut would step by 2
        assert executor.live_instances(PYGAIN) == 1  # the old instance closed once faded
        np.testing.assert_array_equal(processor.process(ones), -ones)
