"""Fuzzing what plugins hand back: every check of stellatune/executor/boundary.py with arbitrary
Python values, and every record conversion of stellatune/executor/values.py with any value the
record's WIT type allows (a plugin controls every number and string within those types, which
is what wasmtime hands the host). The answer is the value, range-checked, or a
``PluginContractError`` naming the plugin and the field: never an OverflowError, a KeyError or
a value downstream code (a path join, numpy, struct.pack) would choke on.

(tests/executor/test_boundary.py has the lying real plugins and two single-check properties.)
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import strategies as st
from wasmtime.component import Variant

from stellatune import abi
from stellatune.errors import PluginContractError
from stellatune.executor.boundary import (
    MAX_BLOCK_FRAMES,
    MAX_CHANNELS,
    MAX_DURATION_MS,
    MAX_JSON_CHARS,
    MAX_REL_PATH_CHARS,
    MAX_SAMPLE_RATE,
    MAX_TEXT_CHARS,
    Boundary,
)
from stellatune.executor.values import (
    AudioSpec,
    ConfigUpdatePlan,
    DecoderInfo,
    MediaMetadata,
    NegotiatedSpec,
    core_module_spec_from,
    record,
)

pytestmark = pytest.mark.fuzz

PLUGIN, CAPABILITY = "dev.test.fuzz", "dsp"

anything = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.sampled_from([0, 1, -1, MAX_SAMPLE_RATE, MAX_SAMPLE_RATE + 1, 2**32 - 1, 2**32, 2**63, MAX_CHANNELS + 1])
    | st.floats()
    | st.text(max_size=40)
    | st.sampled_from(["x\x00y", "../x", "/abs", "a\\b", "a//b", ".", "a/.", " ", "{}", "[1,", "é/ü", "x" * 70_000])
    | st.binary(max_size=20)
    | st.just(object()),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)

#: (method name, extra positional args, what an accepted value must satisfy)
CHECKS: list[tuple[str, tuple[Any, ...], Any]] = [
    ("integer", (-5, 5), lambda v: type(v) is int and -5 <= v <= 5),
    ("optional_integer", (0, 10), lambda v: v is None or (type(v) is int and 0 <= v <= 10)),
    ("sample_rate", (), lambda v: type(v) is int and 1 <= v <= MAX_SAMPLE_RATE),
    ("channels", (), lambda v: type(v) is int and 1 <= v <= MAX_CHANNELS),
    ("frames", (), lambda v: type(v) is int and 0 <= v <= MAX_BLOCK_FRAMES),
    ("duration_ms", (), lambda v: v is None or (type(v) is int and 0 <= v <= MAX_DURATION_MS)),
    ("text", (), lambda v: isinstance(v, str) and len(v) <= MAX_TEXT_CHARS and "\0" not in v),
    ("optional_text", (), lambda v: v is None or (isinstance(v, str) and len(v) <= MAX_TEXT_CHARS and "\0" not in v)),
    ("json_text", (), lambda v: isinstance(v, str) and len(v) <= MAX_JSON_CHARS and "\0" not in v),
    ("json_value", (), lambda v: True),
    (
        "rel_path",
        (),
        lambda v: (
            isinstance(v, str)
            and len(v) <= MAX_REL_PATH_CHARS
            and "\0" not in v
            and "\\" not in v
            and not v.startswith("/")
            and ".." not in v.split("/")
            and all(v.split("/"))
        ),
    ),
]


def _contract(e: PluginContractError, field: str) -> None:
    assert e.plugin_id == PLUGIN and e.capability == CAPABILITY and e.field == field, e
    assert field in str(e) and "\0" not in str(e)


def test_every_boundary_check_accepts_a_good_value_or_names_the_field(fuzz):
    check = Boundary(PLUGIN, CAPABILITY)

    def one(case: tuple[int, Any]) -> str:
        index, value = case
        method, args, good = CHECKS[index]
        try:
            accepted = getattr(check, method)("some.field", value, *args)
        except PluginContractError as e:
            _contract(e, "some.field")
            return f"{method}:refused"
        assert good(accepted), (method, value, accepted)
        if method != "json_value":
            assert accepted == value or (isinstance(value, float) and math.isnan(value))
        return f"{method}:accepted"

    strategy = st.tuples(st.integers(0, len(CHECKS) - 1), anything | st.text(max_size=200))
    fuzz.run("boundary_checks", strategy, one, short=150, full=5000)


# --- WIT records, every value their types allow ----------------------------------------------

u16 = st.integers(0, 0xFFFF) | st.sampled_from([0, 1, 2, 8, 32, 33, 0xFFFF])
u32 = st.integers(0, 0xFFFF_FFFF) | st.sampled_from([0, 1, 48000, MAX_SAMPLE_RATE + 1, 4096, 0xFFFF_FFFF])
u64 = st.integers(0, 2**64 - 1) | st.sampled_from([MAX_DURATION_MS, MAX_DURATION_MS + 1])
s64 = st.integers(-(2**63), 2**63 - 1)
wit_string = st.text(max_size=30) | st.sampled_from(
    ["", "\x00", "wasm/x.hotpath.wasm", "../../etc/passwd", "/etc/passwd", "a\\b", "x" * 70_000, "memory"]
)


def opt(s: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | s


audio_spec = st.builds(lambda r, c: record(sample_rate=r, channels=c), u32, u16)
decoder_info = st.builds(
    lambda r, c, d, s, ed, ep: record(
        sample_rate=r, channels=c, duration_ms=d, seekable=s, encoder_delay_frames=ed, encoder_padding_frames=ep
    ),
    u32,
    u16,
    opt(u64),
    st.booleans(),
    u32,
    u32,
)
metadata_value = st.one_of(
    st.builds(lambda v: Variant("text", v), wit_string),
    st.builds(lambda v: Variant("boolean", v), st.booleans()),
    st.builds(lambda v: Variant("uint32", v), u32),
    st.builds(lambda v: Variant("uint64", v), u64),
    st.builds(lambda v: Variant("int64", v), s64),
    st.builds(lambda v: Variant("float64", v), st.floats()),
    st.builds(lambda v: Variant("bytes", v), st.binary(max_size=16)),
)
tags = st.builds(
    lambda t, al, ar, aa, g, tn, tt, dn, dt, y, c: record(
        title=t,
        album=al,
        artists=ar,
        album_artists=aa,
        genres=g,
        track_number=tn,
        track_total=tt,
        disc_number=dn,
        disc_total=dt,
        year=y,
        comment=c,
    ),
    opt(wit_string),
    opt(wit_string),
    st.lists(wit_string, max_size=4) | st.just(["a"] * 300),
    st.lists(wit_string, max_size=2),
    st.lists(wit_string, max_size=2),
    opt(u32),
    opt(u32),
    opt(u32),
    opt(u32),
    opt(u32),
    opt(wit_string),
)
media_metadata = st.builds(
    lambda t, d, f, x: record(tags=t, duration_ms=d, format=f, extras=x),
    tags,
    opt(u64),
    st.builds(
        lambda c, r, ch, b, co: record(codec=c, sample_rate=r, channels=ch, bitrate_kbps=b, container=co),
        wit_string,
        opt(u32),
        opt(u16),
        opt(u32),
        opt(wit_string),
    ),
    st.lists(st.builds(lambda k, v: record(key=k, value=v), wit_string, metadata_value), max_size=4)
    | st.just([record(key="k", value=Variant("boolean", True))] * 1025),
)
plan = st.builds(
    lambda m, r: record(mode=m, reason=r), st.sampled_from(["hot-apply", "recreate", "reject"]), opt(wit_string)
)
negotiated = st.builds(
    lambda s, c, p: record(spec=s, preferred_chunk_frames=c, prefer_track_rate=p), audio_spec, u32, st.booleans()
)
core_spec = st.builds(
    lambda role, path, abi_v, mem, init, proc, reset, drop, buf: record(
        role=role,
        wasm_rel_path=path,
        abi_version=abi_v,
        memory_export=mem,
        init_export=init,
        process_export=proc,
        reset_export=reset,
        drop_export=drop,
        buffer=buf,
    ),
    st.sampled_from(["dsp-transform", "output-sink"]),
    wit_string,
    u32 | st.just(1),
    wit_string | st.just("memory"),
    wit_string | st.just("st_hot_init"),
    wit_string | st.just("st_hot_process"),
    opt(wit_string),
    opt(wit_string),
    st.builds(
        lambda i, o, m, c, f, il: record(
            in_offset=i, out_offset=o, max_frames=m, channels=c, sample_format=f, interleaved=il
        ),
        u32 | st.sampled_from([abi.SDK_IN_OFFSET, 64, 0]),
        opt(u32 | st.just(abi.SDK_OUT_OFFSET)),
        u32 | st.just(abi.SDK_MAX_FRAMES),
        u16,
        st.sampled_from(["f32le", "i16le", "i32le"]),
        st.booleans(),
    ),
)


def _converted_spec(spec: abi.CoreModuleSpec) -> None:
    """What the loader does next with an accepted spec never raises anything but a list."""
    problems = spec.problems()
    assert isinstance(problems, list) and all(isinstance(p, str) for p in problems)
    if not problems:  # drivable: its init arguments pack (every field within its C width)
        b = spec.buffer
        assert len(abi.pack_init_args(spec.role, 48000, b.channels, b.max_frames, b.in_offset, b.out_offset)) == 44


CONVERSIONS = {
    "audio-spec": (audio_spec, lambda rec, c: AudioSpec.from_wit(rec, c)),
    "decoder-info": (decoder_info, lambda rec, c: DecoderInfo.from_wit(rec, c)),
    "media-metadata": (media_metadata, lambda rec, c: MediaMetadata.from_wit(rec, c)),
    "config-update-plan": (plan, lambda rec, c: ConfigUpdatePlan.from_wit(rec, c)),
    "negotiated-spec": (negotiated, lambda rec, c: NegotiatedSpec.from_wit(rec, c)),
    "core-module-spec": (core_spec, lambda rec, c: _converted_spec(core_module_spec_from(rec, c))),
}


def test_every_record_a_plugin_returns_is_accepted_or_refused_by_field(fuzz):
    check = Boundary(PLUGIN, CAPABILITY)

    def one(case: tuple[str, Any]) -> str:
        name, rec = case
        try:
            CONVERSIONS[name][1](rec, check)
        except PluginContractError as e:
            assert e.plugin_id == PLUGIN and e.field, e
            assert "\0" not in str(e)
            return f"{name}:refused"
        return f"{name}:accepted"

    strategy = st.one_of(*(st.tuples(st.just(name), s) for name, (s, _) in CONVERSIONS.items()))
    outcomes = fuzz.run("plugin_records", strategy, one, short=150, full=5000)
    assert any(k.endswith(":refused") for k in outcomes)
