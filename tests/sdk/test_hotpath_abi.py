"""Hot-path ABI v1 as the SDK's modules implement it: init validation, contexts, process rules,
parameters, memory discipline, and the sink role. Run on wasm and on the native baseline."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from stellatune import abi

SCRATCH = abi.SDK_SCRATCH_OFFSET
INVALID, UNSUPPORTED, WOULD_BLOCK, NOT_READY = (
    abi.ErrorCode.INVALID_ARG,
    abi.ErrorCode.UNSUPPORTED,
    abi.ErrorCode.WOULD_BLOCK,
    abi.ErrorCode.NOT_READY,
)


@pytest.fixture(params=["wasm", "native"])
def load(request, hot, native):
    """``load(name)``: a fresh hot-path module of either build."""
    return hot if request.param == "wasm" else native


def args(**override) -> bytes:
    fields = dict(
        abi_version=1,
        role=1,
        sample_rate=48000,
        channels=2,
        sample_format=1,
        max_frames=256,
        in_offset=abi.SDK_IN_OFFSET,
        out_offset=abi.SDK_OUT_OFFSET,
        buffer_bytes=256 * 2 * 4,
        flags=0,
        r0=0,
        r1=0,
    )
    fields.update(override)
    return struct.pack("<IIIHHIIIIIII", *fields.values())


def test_pack_init_args_matches_the_field_layout():
    packed = abi.pack_init_args(abi.Role.DSP_TRANSFORM, 48000, 2, 256, abi.SDK_IN_OFFSET, abi.SDK_OUT_OFFSET)
    assert packed == args()
    assert len(packed) == abi.INIT_ARGS_SIZE == 44


@pytest.mark.parametrize(
    "override,code",
    [
        (dict(abi_version=2), INVALID),
        (dict(role=2), INVALID),  # a DSP module refuses the sink role
        (dict(sample_format=2), UNSUPPORTED),  # i16: the SDK kernels are f32 only
        (dict(channels=0, buffer_bytes=0), INVALID),
        (dict(channels=9, buffer_bytes=256 * 9 * 4), INVALID),
        (dict(max_frames=4097, buffer_bytes=4097 * 8), INVALID),
        (dict(max_frames=0, buffer_bytes=0), INVALID),
        (dict(sample_rate=0), INVALID),
        (dict(in_offset=abi.SDK_IN_OFFSET + 4), INVALID),
        (dict(out_offset=abi.SDK_IN_OFFSET), INVALID),
        (dict(buffer_bytes=123), INVALID),
    ],
)
def test_init_rejects_bad_args(load, override, code):
    m = load("gain")
    assert m.init(args=args(**override)) == code


def test_init_rejects_pointers_outside_host_scratch(load):
    m = load("gain")
    m.write(SCRATCH, args())
    assert m.call("st_hot_init", 0, SCRATCH + 48) == INVALID
    assert m.call("st_hot_init", SCRATCH, abi.SDK_IN_OFFSET) == INVALID
    assert m.call("st_hot_init", SCRATCH + 2, SCRATCH + 48) == INVALID  # misaligned
    assert m.call("st_hot_init", SCRATCH, SCRATCH + 48) == 0


def test_contexts_are_distinct_and_limited(load, noise):
    m = load("gain")
    ctxs = []
    for _ in range(abi.SDK_MAX_INSTANCES):
        assert m.init() == 0
        ctxs.append(m.ctx)
    assert len(set(ctxs)) == abi.SDK_MAX_INSTANCES and 0 not in ctxs
    assert m.init() == NOT_READY
    m.call("st_hot_drop", ctxs[1])
    assert m.init() == 0 and m.ctx == ctxs[1]
    # Contexts keep their own parameters.
    x = noise(16, 2)
    m.ctx = ctxs[0]
    m.configure(gain_db=-6.0)
    quiet = m.process(x)
    m.ctx = ctxs[2]
    np.testing.assert_array_equal(m.process(x), x)
    assert np.all(np.abs(quiet) < np.abs(x) + 1e-9)


def test_process_rejects_unknown_context_and_oversized_blocks(load, noise):
    m = load("gain")
    assert m.init(max_frames=128) == 0
    assert m.run(noise(129, 2))[0] == INVALID
    assert m.run(noise(8, 2), ctx=m.ctx + 1)[0] == INVALID
    assert m.run(noise(8, 2), ctx=0)[0] == INVALID
    m.call("st_hot_drop", m.ctx)
    assert m.run(noise(8, 2))[0] == INVALID
    assert m.call("st_hot_reset", m.ctx, 0) == INVALID


def test_dsp_produces_exactly_frames(load, noise):
    m = load("delay")
    assert m.init(max_frames=256) == 0
    for frames in (1, 17, 256, 0):
        rc, out_frames, flags, _ = m.run(noise(frames, 2))
        assert (rc, out_frames, flags) == (0, frames, 0)


def test_guest_leaves_host_scratch_alone(load, noise):
    m = load("eq")
    assert m.init() == 0
    sentinel = bytes(range(200, 244))
    m.write(SCRATCH, sentinel)  # the host may reuse the init-args bytes
    m.write(SCRATCH + 60, b"\xaa\xbb\xcc\xdd")
    m.process(noise(256, 2))
    assert m.read(SCRATCH, 44) == sentinel
    assert m.read(SCRATCH + 60, 4) == b"\xaa\xbb\xcc\xdd"


def test_param_names_and_set_param(load):
    m = load("compressor")
    assert m.init() == 0
    assert m.param_names() == ["threshold_db", "ratio", "attack_ms", "release_ms", "makeup_db"]
    assert m.call("st_hot_param_names") == abi.SDK_NAMES_OFFSET
    assert m.set_param("ratio", 0.5) == INVALID  # below the range
    assert m.set_param("ratio", float("nan")) == INVALID
    assert m.call("st_hot_set_param", m.ctx, 99, 1.0) == INVALID
    assert m.call("st_hot_set_param", m.ctx + 1, 0, 1.0) == INVALID
    assert m.set_param("ratio", 20.0) == 0


def test_refused_param_keeps_the_previous_value(load, noise):
    m = load("gain")
    assert m.init() == 0
    m.configure(gain_db=-12.0)
    x = noise(64, 2)
    before = m.process(x)
    assert m.set_param("gain_db", 30.0) == INVALID
    np.testing.assert_array_equal(m.process(x), before)


def test_params_survive_reset(load, noise):
    m = load("gain")
    assert m.init() == 0
    m.configure(gain_db=-6.0)
    x = noise(64, 2)
    before = m.process(x)
    assert m.call("st_hot_reset", m.ctx, 0) == 0
    np.testing.assert_array_equal(m.process(x), before)


def test_reset_forgets_history(load, noise):
    m = load("delay")
    assert m.init(max_frames=512) == 0
    m.configure(time_ms=5.0, mix=1.0, feedback=0.5)
    m.process(noise(512, 2))
    assert m.call("st_hot_reset", m.ctx, 0) == 0
    assert np.all(m.process(np.zeros((200, 2), np.float32)) == 0)


@pytest.mark.parametrize("name", ["gain", "eq", "compressor", "delay", "passthrough-sink"])
def test_exports_and_no_imports(hot, name):
    m = hot(name)
    assert [i for i in m.module.imports] == []
    for export in (
        "memory",
        "st_hot_init",
        "st_hot_process",
        "st_hot_reset",
        "st_hot_drop",
        "st_hot_param_names",
        "st_hot_set_param",
    ):
        assert m.has(export), export
    assert not m.has("st_hot_native_memory")


@pytest.mark.parametrize("name", ["gain", "eq", "compressor", "delay", "passthrough-sink"])
def test_memory_never_grows_and_covers_the_arena(hot, noise, name):
    m = hot(name)
    role = abi.Role.OUTPUT_SINK if name == "passthrough-sink" else abi.Role.DSP_TRANSFORM
    assert m.init(channels=8, max_frames=4096, role=role) == 0
    size = m.memory.data_len(m.store)
    assert size >= abi.SDK_ARENA_END
    for _ in range(3):
        assert m.run(noise(4096, 8))[0] == 0
    assert m.call("st_hot_reset", m.ctx, 0) == 0
    m.call("st_hot_drop", m.ctx)
    assert m.memory.data_len(m.store) == size


# --- the sink role ------------------------------------------------------------------------


def fnv1a_words(data: np.ndarray, h: int = 0xCBF29CE484222325) -> int:
    for word in np.ascontiguousarray(data, dtype="<f4").view("<u4").ravel().tolist():
        h = ((h ^ word) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def sink_counters(m) -> tuple[int, int]:
    frames = m.call("st_sink_frames_consumed", m.ctx) & 0xFFFFFFFFFFFFFFFF
    return frames, m.call("st_sink_checksum", m.ctx) & 0xFFFFFFFFFFFFFFFF


def test_sink_consumes_everything_and_checksums_it(load, noise):
    m = load("passthrough-sink")
    assert m.init(channels=2, max_frames=512, role=abi.Role.OUTPUT_SINK) == 0
    blocks = [noise(512, 2), noise(100, 2), noise(1, 2)]
    for block in blocks:
        rc, taken, flags, _ = m.run(block)
        assert (rc, taken, flags) == (0, block.shape[0], abi.Flag.DRAINED)
    assert sink_counters(m) == (613, fnv1a_words(np.concatenate(blocks)))


def test_sink_refuses_the_dsp_role(load):
    m = load("passthrough-sink")
    assert m.init(role=abi.Role.DSP_TRANSFORM) == INVALID


def test_sink_partial_consumption_reoffers_the_rest(load, noise):
    """The host loop: unconsumed frames are offered again; the sink sees each frame once."""
    m = load("passthrough-sink")
    assert m.init(channels=2, max_frames=256, role=abi.Role.OUTPUT_SINK) == 0
    m.configure(max_accept=100)
    signal = noise(1000, 2)
    pending, offered = signal, 0
    while pending.shape[0]:
        rc, taken, _, _ = m.run(pending[:256])
        assert rc == 0 and 0 < taken <= 100
        pending = pending[taken:]
        offered += 1
    assert offered == 10
    assert sink_counters(m) == (1000, fnv1a_words(signal))


def test_sink_empty_block_is_not_would_block(load):
    m = load("passthrough-sink")
    assert m.init(role=abi.Role.OUTPUT_SINK) == 0
    rc, taken, _, _ = m.run(np.zeros((0, 2), np.float32))
    assert (rc, taken) == (0, 0)
    assert sink_counters(m)[0] == 0
