"""The SDK runtime (glue/st_runtime.c) on its own: math accuracy and the JSON helpers plugin
authors call, through a native build loaded with ctypes (the wasm build runs the same code; the
kernel tests show both agree bit for bit)."""

from __future__ import annotations

import ctypes
import math
import subprocess

import numpy as np
import pytest

from stellatune.sdk.cbuild import GLUE_DIR, INCLUDE_DIR


class Param(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("min", ctypes.c_float),
        ("max", ctypes.c_float),
        ("default", ctypes.c_float),
    ]


# The header's inline helpers, given linkage so ctypes can call them.
INLINE_WRAPPERS = """
#include "stellatune_sdk.h"
float t_flush(float x) { return st_flush_denormal(x); }
float t_select(int c, float a, float b) { return st_selectf(c, a, b); }
void t_flush4(const float *x, float *y) { st_store4(y, st_flush_denormal4(st_load4(x))); }
"""


@pytest.fixture(scope="module")
def rt(tmp_path_factory):
    d = tmp_path_factory.mktemp("rt")
    (d / "wrappers.c").write_text(INLINE_WRAPPERS)
    lib = d / "st_runtime.so"
    subprocess.run(
        [
            "clang-14",
            "-O2",
            "-std=c11",
            "-fno-math-errno",
            "-shared",
            "-fPIC",
            "-I",
            str(INCLUDE_DIR),
            "-I",
            str(GLUE_DIR),
            "-o",
            str(lib),
            str(GLUE_DIR / "st_runtime.c"),
            str(d / "wrappers.c"),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    dll = ctypes.CDLL(str(lib))
    dll.t_flush.restype = ctypes.c_float
    dll.t_flush.argtypes = [ctypes.c_float]
    dll.t_select.restype = ctypes.c_float
    dll.t_select.argtypes = [ctypes.c_int, ctypes.c_float, ctypes.c_float]
    for name in ("st_exp", "st_log", "st_sin", "st_cos", "st_sqrt"):
        getattr(dll, name).restype = ctypes.c_double
        getattr(dll, name).argtypes = [ctypes.c_double]
    for name in ("st_db_to_gain", "st_fast_log2f", "st_fast_exp2f"):
        getattr(dll, name).restype = ctypes.c_float
        getattr(dll, name).argtypes = [ctypes.c_float]
    dll.st_json_number.argtypes = [ctypes.c_char_p, ctypes.c_uint32, ctypes.c_char_p, ctypes.POINTER(ctypes.c_double)]
    dll.st_json_check_keys.argtypes = [ctypes.c_char_p, ctypes.c_uint32, ctypes.POINTER(Param), ctypes.c_uint32]
    dll.st_put_float.argtypes = [ctypes.c_char_p, ctypes.c_uint32, ctypes.c_uint32, ctypes.c_float]
    dll.st_put_float.restype = ctypes.c_uint32
    return dll


def rel_err(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-300)


def test_exp_and_log_are_accurate(rt):
    xs = np.concatenate([np.linspace(-700, 700, 2001), np.linspace(-1, 1, 2001), [0.0]])
    assert max(rel_err(rt.st_exp(x), math.exp(x)) for x in xs) < 2e-15
    ys = np.concatenate([np.geomspace(1e-300, 1e300, 2001), np.linspace(0.5, 2, 2001), [5e-324, 1.0]])
    assert max(abs(rt.st_log(y) - math.log(y)) / max(1.0, abs(math.log(y))) for y in ys) < 2e-15
    assert rt.st_exp(1000) == math.inf and rt.st_exp(-1000) == 0.0
    assert rt.st_log(0.0) == -math.inf and math.isnan(rt.st_log(-1.0))


def test_sin_and_cos_are_accurate(rt):
    xs = np.linspace(-2 * math.pi, 2 * math.pi, 4001)
    assert max(abs(rt.st_sin(x) - math.sin(x)) for x in xs) < 1e-15
    assert max(abs(rt.st_cos(x) - math.cos(x)) for x in xs) < 1e-15


def test_db_to_gain_rounds_like_numpy(rt):
    dbs = np.linspace(-96, 24, 4801, dtype=np.float32)
    ours = np.array([rt.st_db_to_gain(float(d)) for d in dbs], dtype=np.float32)
    np.testing.assert_array_equal(ours, (10.0 ** (dbs.astype(np.float64) / 20)).astype(np.float32))


def test_fast_log2_and_exp2_errors(rt):
    xs = np.geomspace(1e-6, 4.0, 3001, dtype=np.float32)
    assert max(abs(rt.st_fast_log2f(float(x)) - math.log2(float(x))) for x in xs) < 2e-6
    es = np.linspace(-40, 10, 3001, dtype=np.float32)
    assert max(rel_err(rt.st_fast_exp2f(float(e)), 2.0 ** float(e)) for e in es) < 2e-6


def json_number(rt, text: str, key: str):
    out = ctypes.c_double()
    data = text.encode()
    rc = rt.st_json_number(data, len(data), key.encode(), ctypes.byref(out))
    return rc, out.value


@pytest.mark.parametrize(
    "text,key,expected",
    [
        ('{"gain_db": -6}', "gain_db", (1, -6.0)),
        ('{"a": "x", "gain_db": 1.25e-2, "b": [1, {"c": "}"}]}', "gain_db", (1, 0.0125)),
        ('{"a": 1}', "gain_db", (0, 0.0)),
        ('{"gain_db": true}', "gain_db", (-1, 0.0)),
        ('{"gain_db": 1,}', "gain_db", (-1, 0.0)),
        ('{"gain\\"db": 1}', "gain_db", (0, 0.0)),
        ("", "gain_db", (-1, 0.0)),
    ],
)
def test_json_number(rt, text, key, expected):
    assert json_number(rt, text, key) == expected


def test_json_number_parses_exactly_where_it_can(rt):
    # Up to 15 significant digits and |exponent| <= 22: one correctly rounded operation.
    for text in ("0.1", "-96", "24", "0.35", "1e-7", "123456789012345", "-1.5e1"):
        assert json_number(rt, f'{{"k": {text}}}', "k") == (1, float(text))
    # Longer mantissas or larger exponents: within a few ulp, far below float resolution.
    for text in ("3.4028234663852886e38", "123456789012345678901", "1e-30", "0.30000000000000004"):
        rc, value = json_number(rt, f'{{"k": {text}}}', "k")
        assert rc == 1 and rel_err(value, float(text)) < 1e-15
    assert json_number(rt, '{"k": 1e400}', "k") == (1, math.inf)
    assert json_number(rt, '{"k": -1e-400}', "k") == (1, -0.0)


def test_json_check_keys(rt):
    params = (Param * 2)(Param(b"a", 0, 1, 0), Param(b"bb", 0, 1, 0))

    def check(text):
        return rt.st_json_check_keys(text.encode(), len(text.encode()), params, 2)

    assert check('{"a": 1, "bb": 2}') == 2  # count: all known
    assert check('{"a": 1, "b": 2}') == 1  # index of the first unknown key
    assert check('{"a": 1') == -1


@pytest.mark.parametrize(
    "value,text",
    [
        (0.0, "0"),
        (-6.0, "-6"),
        (0.3, "0.3"),
        (250.0, "250"),
        (0.95, "0.95"),
        (1e-6, "0.000001"),
        (1e-7, "1e-7"),
        (3.0e20, "3e20"),
        (-0.1, "-0.1"),
    ],
)
def test_put_float_is_short_and_reads_back(rt, value, text):
    buf = ctypes.create_string_buffer(64)
    n = rt.st_put_float(buf, 0, 64, value)
    assert buf.value.decode() == text and n == len(text)
    assert np.float32(float(buf.value)) == np.float32(value)


def test_put_float_never_overflows_its_buffer(rt):
    buf = ctypes.create_string_buffer(b"\xff" * 8)
    rt.st_put_float(buf, 0, 4, -123.456)
    assert buf.raw[:4] == b"-12\0" and buf.raw[4:8] == b"\xff" * 4


def test_flush_denormal_zeroes_below_1e_30_only(rt):
    limit = np.float32(1e-30)
    below = np.nextafter(limit, np.float32(0))
    for tiny in (below, -below, np.float32(1e-38), np.float32(1e-45), -np.float32(1e-45)):
        out = rt.t_flush(float(tiny))
        assert out == 0.0 and math.copysign(1.0, out) == 1.0  # +0, never -0
    for kept in (limit, -limit, np.float32(0.5), np.float32(-3e38)):
        assert np.float32(rt.t_flush(float(kept))) == kept
    assert rt.t_flush(math.inf) == math.inf and math.isnan(rt.t_flush(math.nan))


def test_vector_flush_matches_scalar_bit_for_bit(rt):
    limit = np.float32(1e-30)
    values = np.array(
        [
            limit,
            np.nextafter(limit, np.float32(0)),
            -limit,
            1e-38,
            -1e-45,
            0.0,
            -0.0,
            0.5,
            -3e38,
            np.inf,
            -np.inf,
            np.nan,
            -np.nan,
            1.2e-30,
            2.0**-126,
            np.float32(1e-31),
        ],
        dtype=np.float32,
    )
    out = np.empty_like(values)
    ptr = ctypes.POINTER(ctypes.c_float)
    for i in range(0, len(values), 4):
        rt.t_flush4(values[i:].ctypes.data_as(ptr), out[i:].ctypes.data_as(ptr))
    scalar = np.array([rt.t_flush(float(v)) for v in values], dtype=np.float32)
    np.testing.assert_array_equal(out.view(np.uint32), scalar.view(np.uint32))


def test_selectf(rt):
    assert rt.t_select(1, 1.5, -2.0) == 1.5
    assert rt.t_select(0, 1.5, -2.0) == -2.0
    assert rt.t_select(7, -0.0, 0.0) == 0.0 and math.copysign(1, rt.t_select(7, -0.0, 0.0)) == -1
