"""The example kernels against numpy reference implementations, and wasm against native.

Tolerances (stated in docs/c-sdk.md):
- gain, delay: bit-exact against a float32 numpy reference (same operations, same order);
- eq: bit-exact against a float32 reference (every operation rounded to float32 in eq.c's
  order, states flushed once per block); within 1e-4 of the float64 filter (float32 rounding
  noise of a low-frequency shelf);
- compressor: |error| <= 2e-5 against a float64 reference with exact log2/exp2 (the kernel uses
  the SDK's fast log2/exp2, error ~1e-6 in the exponent);
- wasm vs native: bit-identical for every kernel (same C, IEEE, no FMA, SDK's own math).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

SR = 48000


# --- numpy references ---------------------------------------------------------------------


def ref_gain(x: np.ndarray, gain_db: float) -> np.ndarray:
    return x * np.float32(10.0 ** (gain_db / 20.0))


def ref_delay(x: np.ndarray, time_ms: float, feedback: float, mix: float) -> np.ndarray:
    """float32, same operation order as delay.c; vectorised a delay length at a time."""
    frames, channels = x.shape
    d_frames = min(max(int(np.float32(time_ms) * SR / 1000.0 + 0.5), 1), 96000)
    fb, wet = np.float32(feedback), np.float32(mix)
    dry = np.float32(1) - wet
    line = np.zeros((d_frames + frames, channels), dtype=np.float32)  # line[t] = written at t - D
    out = np.empty_like(x)
    for t in range(0, frames, d_frames):
        k = min(d_frames, frames - t)
        d = line[t : t + k]
        xs = x[t : t + k]
        out[t : t + k] = dry * xs + wet * d
        head = xs + fb * d
        line[t + d_frames : t + d_frames + k] = np.where(np.abs(head) < np.float32(1e-30), 0, head)
    return out


def eq_coefficients(params: dict[str, float], sr: int = SR) -> list[tuple[str, list[float]]]:
    """RBJ cookbook, as eq.c computes them (double), rounded to float32."""
    bands = []
    for band, kind in (("low", "lowshelf"), ("mid1", "peak"), ("mid2", "peak"), ("high", "highshelf")):
        gain = float(np.float32(params[f"{band}_gain_db"]))
        if gain == 0.0:
            continue
        f = min(float(np.float32(params[f"{band}_freq"])), 0.45 * sr)
        A = 10.0 ** (gain / 40.0)
        w0 = 2 * math.pi * f / sr
        cw, sw = math.cos(w0), math.sin(w0)
        if kind == "peak":
            alpha = sw / (2 * float(np.float32(params[f"{band}_q"])))
            b = [1 + alpha * A, -2 * cw, 1 - alpha * A]
            a = [1 + alpha / A, -2 * cw, 1 - alpha / A]
        else:
            k = 2 * math.sqrt(A) * (sw / 2 * math.sqrt(2))
            ap, am = A + 1, A - 1
            if kind == "lowshelf":
                b = [A * (ap - am * cw + k), 2 * A * (am - ap * cw), A * (ap - am * cw - k)]
                a = [ap + am * cw + k, -2 * (am + ap * cw), ap + am * cw - k]
            else:
                b = [A * (ap + am * cw + k), -2 * A * (am + ap * cw), A * (ap + am * cw - k)]
                a = [ap - am * cw + k, 2 * (am - ap * cw), ap - am * cw - k]
        coef = [float(np.float32(v / a[0])) for v in (b[0], b[1], b[2], a[1], a[2])]
        bands.append((band, coef))
    return bands


def ref_eq(x: np.ndarray, params: dict[str, float], block: int = 0) -> np.ndarray:
    """Biquad cascade in TDF-II. With ``block``, every operation is rounded to float32 and the
    states are flushed every ``block`` frames, as eq.c does; without, plain float64."""

    def f32(v: float) -> float:  # a float32 product or sum, computed exactly in double first
        return float(np.float32(v))

    r = f32 if block else float
    y = x.astype(np.float64)
    for _, (b0, b1, b2, a1, a2) in eq_coefficients(params):
        for ch in range(y.shape[1]):
            col = y[:, ch].tolist()
            z1 = z2 = 0.0
            for i, v in enumerate(col):
                o = r(r(b0 * v) + z1)
                z1 = r(r(r(b1 * v) + z2) - r(a1 * o))  # eq.c's order: (b1 x + z2) - a1 o
                z2 = r(r(b2 * v) - r(a2 * o))
                col[i] = o
                if block and (i + 1) % block == 0:
                    z1 = 0.0 if abs(z1) < 1e-30 else z1
                    z2 = 0.0 if abs(z2) < 1e-30 else z2
            y[:, ch] = col
    return y


def ref_compressor(
    x: np.ndarray, threshold_db: float, ratio: float, attack_ms: float, release_ms: float, makeup_db: float
) -> np.ndarray:
    """Peak detector, one-pole envelope, hard knee; float64 with exact log2/exp2."""
    att = math.exp(-1000.0 / (attack_ms * SR))
    rel = math.exp(-1000.0 / (release_ms * SR))
    thr = 10 ** (threshold_db / 20)
    slope = 1 / ratio - 1
    makeup = 10 ** (makeup_db / 20)
    levels = np.abs(x.astype(np.float64)).max(axis=1).tolist()
    gains = []
    env = 0.0
    for level in levels:
        env = level + (att if level > env else rel) * (env - level)
        g = makeup
        if env > thr:
            g *= 2.0 ** ((math.log2(env) - math.log2(thr)) * slope)
        gains.append(g)
    return x.astype(np.float64) * np.array(gains)[:, None]


# --- tests --------------------------------------------------------------------------------


@pytest.mark.parametrize("gain_db", [0.0, -6.0, 3.5, -96.0, 24.0, -0.1])
def test_gain_is_bit_exact_against_numpy(hot, native, noise, gain_db):
    x = noise(3000, 2)
    for module in (hot("gain"), native("gain")):
        assert module.init(channels=2, max_frames=1024) == 0
        module.configure(gain_db=gain_db)
        np.testing.assert_array_equal(module.process_all(x, 1024), ref_gain(x, gain_db))


def test_gain_default_is_unity(hot, noise):
    m = hot("gain")
    assert m.init(channels=1) == 0
    x = noise(256, 1)
    np.testing.assert_array_equal(m.process(x), x)


@pytest.mark.parametrize(
    "params",
    [
        dict(time_ms=250.0, feedback=0.35, mix=0.3),
        dict(time_ms=1.0, feedback=0.95, mix=1.0),
        dict(time_ms=7.3, feedback=0.0, mix=0.5),
    ],
)
def test_delay_is_bit_exact_against_numpy(hot, noise, params):
    x = noise(20000, 2)
    m = hot("delay")
    assert m.init(channels=2, max_frames=512) == 0
    m.configure(**params)
    np.testing.assert_array_equal(m.process_all(x, 512), ref_delay(x, **params))


EQ_SETTINGS = dict(
    low_freq=120.0,
    low_gain_db=6.0,
    mid1_freq=400.0,
    mid1_gain_db=-4.5,
    mid1_q=0.7,
    mid2_freq=3000.0,
    mid2_gain_db=3.0,
    mid2_q=2.0,
    high_freq=9000.0,
    high_gain_db=-6.0,
)


def test_eq_matches_reference_biquads(hot, noise):
    x = noise(4000, 2)
    m = hot("eq")
    assert m.init(channels=2, max_frames=1000) == 0
    m.configure(**EQ_SETTINGS)
    out = m.process_all(x, 1000)
    np.testing.assert_array_equal(out, ref_eq(x, EQ_SETTINGS, block=1000).astype(np.float32))
    assert np.max(np.abs(out - ref_eq(x, EQ_SETTINGS))) <= 1e-4
    assert np.max(np.abs(out - x)) > 0.01  # the bands really act


@pytest.mark.parametrize("block", [1, 2, 3, 5, 1000])
def test_eq_with_some_bands_flat_matches_reference(hot, native, noise, block):
    """0 dB bands between active ones pass samples through unchanged, at any block length."""
    settings = dict(EQ_SETTINGS, mid1_gain_db=0.0, high_gain_db=0.0)
    x = noise(2000, 3)
    expected = ref_eq(x, settings, block=block).astype(np.float32)
    for m in (hot("eq"), native("eq")):
        assert m.init(channels=3, max_frames=block) == 0
        m.configure(**settings)
        np.testing.assert_array_equal(m.process_all(x, block), expected)


def test_eq_band_switched_back_on_starts_from_rest(hot, noise):
    m, fresh = hot("eq"), hot("eq")
    for e in (m, fresh):
        assert e.init(channels=2, max_frames=512) == 0
        e.configure(mid2_freq=200.0, mid2_gain_db=9.0)
    x = noise(512, 2)
    m.process(x)
    m.configure(mid2_gain_db=0.0)
    np.testing.assert_array_equal(m.process(x), x)  # every band flat: the input, untouched
    m.configure(mid2_gain_db=9.0)
    np.testing.assert_array_equal(m.process(x), fresh.process(x))


def test_eq_with_flat_bands_is_identity(hot, noise):
    m = hot("eq")
    assert m.init(channels=2) == 0
    x = noise(512, 2)
    np.testing.assert_array_equal(m.process(x), x)


def test_eq_peak_gain_at_centre_frequency(hot):
    """A +6 dB peaking band lifts a sine at its centre frequency by 6 dB."""
    m = hot("eq")
    assert m.init(channels=1, max_frames=4096) == 0
    m.configure(mid1_freq=1000.0, mid1_gain_db=6.0, mid1_q=1.0)
    t = np.arange(4 * SR // 10)
    x = (0.25 * np.sin(2 * np.pi * 1000.0 * t / SR)).astype(np.float32)[:, None]
    y = m.process_all(x, 4096)
    settled = slice(SR // 10, None)
    ratio_db = 20 * np.log10(np.max(np.abs(y[settled])) / 0.25)
    assert abs(ratio_db - 6.0) < 0.05


COMP_SETTINGS = dict(threshold_db=-20.0, ratio=4.0, attack_ms=5.0, release_ms=80.0, makeup_db=3.0)


@pytest.mark.parametrize("channels,block", [(2, 512), (3, 5), (1, 333), (2, 4096)])
def test_compressor_matches_reference(hot, noise, channels, block):
    # Loud bursts over quiet noise: attack, hold above threshold, release.
    x = noise(6000, channels, amplitude=0.05)
    x[1000:3000] *= 16
    m = hot("compressor")
    assert m.init(channels=channels, max_frames=block) == 0
    m.configure(**COMP_SETTINGS)
    out = m.process_all(x, block)
    ref = ref_compressor(x, **COMP_SETTINGS)
    assert np.max(np.abs(out - ref)) <= 2e-5
    # It compresses: the burst's peak comes out well below its input peak (+3 dB makeup).
    assert np.max(np.abs(out[2000:3000])) < 0.6 * np.max(np.abs(x[2000:3000]))


def test_compressor_below_threshold_applies_only_makeup(hot, noise):
    m = hot("compressor")
    assert m.init(channels=2) == 0
    m.configure(threshold_db=0.0, makeup_db=6.0)
    x = noise(1024, 2, amplitude=0.5)
    np.testing.assert_allclose(m.process(x), x * np.float32(10 ** (6 / 20)), rtol=1e-6)


CONFIGS = {
    "gain": dict(gain_db=-3.25),
    "eq": EQ_SETTINGS,
    "compressor": COMP_SETTINGS,
    "delay": dict(time_ms=13.0, feedback=0.8, mix=0.6),
}


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("channels,block", [(1, 1), (2, 64), (2, 1024), (6, 333), (8, 4096)])
def test_wasm_and_native_are_bit_identical(hot, native, noise, name, channels, block):
    x = noise(max(3 * block, 2000), channels, amplitude=0.9)
    outputs = []
    for module in (hot(name), native(name)):
        assert module.init(channels=channels, max_frames=block) == 0
        module.configure(**CONFIGS[name])
        first = module.process_all(x, block)
        # A parameter change between blocks, then a reset, must stay identical as well.
        first_param = module.param_names()[0]
        assert module.set_param(first_param, CONFIG_CHANGE[name]) == 0
        second = module.process_all(x, block)
        assert module.call("st_hot_reset", module.ctx, 0) == 0
        third = module.process_all(x[:block], block)
        outputs.append(np.concatenate([first, second, third]))
    np.testing.assert_array_equal(outputs[0], outputs[1])


CONFIG_CHANGE = {"gain": 7.0, "eq": 250.0, "compressor": -30.0, "delay": 2.5}


@pytest.mark.parametrize("name", ["eq", "delay", "compressor"])
def test_decaying_tails_flush_to_exact_zero(hot, name):
    """After an impulse, silence comes out as exact zeros, never lingering subnormals."""
    m = hot(name)
    assert m.init(channels=2, max_frames=512) == 0
    m.configure(**CONFIGS[name])
    if name == "delay":
        m.configure(time_ms=1.0, feedback=0.95)
    impulse = np.zeros((512, 2), dtype=np.float32)
    impulse[0] = 1.0
    m.process(impulse)
    silence = np.zeros((512, 2), dtype=np.float32)
    tail = np.stack([m.process(silence) for _ in range(400)])
    assert np.all(tail[-1] == 0), "the tail must end in exact zeros, not a subnormal limit cycle"
    subnormal = (tail != 0) & (np.abs(tail) < np.finfo(np.float32).tiny)
    blocks_with_subnormals = int(np.count_nonzero(subnormal.any(axis=(1, 2))))
    # delay and compressor flush every sample; eq flushes its states once per block, so a
    # band's tail may cross the subnormal range within at most one block.
    assert blocks_with_subnormals <= (4 if name == "eq" else 0)


def test_short_blocks_are_fine(hot, noise):
    """frames < max_frames is just a short block: the result equals one long block's."""
    x = noise(1000, 2)
    whole, pieces = hot("eq"), hot("eq")
    for m in (whole, pieces):
        assert m.init(channels=2, max_frames=1000) == 0
        m.configure(**EQ_SETTINGS)
    np.testing.assert_array_equal(
        whole.process(x), np.concatenate([pieces.process(x[a:b]) for a, b in ((0, 1), (1, 500), (500, 1000))])
    )
