"""The C header and stellatune.abi say the same thing, and CoreModuleSpec.problems() catches
specs the ABI cannot drive."""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace

import pytest

from stellatune import abi
from stellatune.sdk.cbuild import INCLUDE_DIR

INCLUDE = INCLUDE_DIR

PROBE = r"""
#include <stdio.h>
#include "stellatune_sdk.h"
#define F(name, value) printf("\"%s\": %lld,\n", name, (long long)(value))
int main(void) {
    printf("{\n");
    F("sizeof", sizeof(st_hot_init_args));
    F("alignof", _Alignof(st_hot_init_args));
    F("off_abi_version", offsetof(st_hot_init_args, abi_version));
    F("off_role", offsetof(st_hot_init_args, role));
    F("off_sample_rate", offsetof(st_hot_init_args, sample_rate));
    F("off_channels", offsetof(st_hot_init_args, channels));
    F("off_sample_format", offsetof(st_hot_init_args, sample_format));
    F("off_max_frames", offsetof(st_hot_init_args, max_frames));
    F("off_in_offset", offsetof(st_hot_init_args, in_offset));
    F("off_out_offset", offsetof(st_hot_init_args, out_offset));
    F("off_buffer_bytes", offsetof(st_hot_init_args, buffer_bytes));
    F("off_flags", offsetof(st_hot_init_args, flags));
    F("off_reserved0", offsetof(st_hot_init_args, reserved0));
    F("off_reserved1", offsetof(st_hot_init_args, reserved1));
    F("ABI_VERSION", ST_HOT_ABI_VERSION);
    F("ROLE_DSP", ST_HOT_ROLE_DSP_TRANSFORM); F("ROLE_SINK", ST_HOT_ROLE_OUTPUT_SINK);
    F("F32", ST_HOT_FORMAT_F32LE); F("I16", ST_HOT_FORMAT_I16LE); F("I32", ST_HOT_FORMAT_I32LE);
    F("EOF", ST_HOT_FLAG_EOF); F("DRAINED", ST_HOT_FLAG_DRAINED);
    F("NEED_RESET", ST_HOT_FLAG_NEED_RESET); F("SOFT_ERROR", ST_HOT_FLAG_SOFT_ERROR);
    F("E1", ST_HOT_ERR_INVALID_ARG); F("E2", ST_HOT_ERR_UNSUPPORTED); F("E3", ST_HOT_ERR_IO);
    F("E4", ST_HOT_ERR_INTERNAL); F("E5", ST_HOT_ERR_WOULD_BLOCK); F("E6", ST_HOT_ERR_NOT_READY);
    F("SCRATCH_SIZE", ST_HOT_SCRATCH_SIZE); F("S_ARGS", ST_HOT_SCRATCH_INIT_ARGS);
    F("S_CTX", ST_HOT_SCRATCH_OUT_CTX); F("S_FRAMES", ST_HOT_SCRATCH_OUT_FRAMES);
    F("S_FLAGS", ST_HOT_SCRATCH_OUT_FLAGS);
    F("MAX_FRAMES", ST_MAX_FRAMES); F("MAX_CHANNELS", ST_MAX_CHANNELS);
    F("MAX_INSTANCES", ST_MAX_INSTANCES); F("MAX_RATE", ST_MAX_SAMPLE_RATE);
    F("NAMES", ST_NAMES_OFFSET); F("SCRATCH", ST_SCRATCH_OFFSET); F("IN", ST_IN_OFFSET);
    F("OUT", ST_OUT_OFFSET); F("END", ST_ARENA_END);
    printf("\"exports\": [\"%s\", \"%s\", \"%s\", \"%s\", \"%s\", \"%s\", \"%s\", \"%s\"]\n}\n",
           ST_HOT_EXPORT_MEMORY, ST_HOT_EXPORT_INIT, ST_HOT_EXPORT_PROCESS, ST_HOT_EXPORT_RESET,
           ST_HOT_EXPORT_DROP, ST_HOT_EXPORT_PARAM_NAMES, ST_HOT_EXPORT_SET_PARAM,
           ST_HOT_EXPORT_NATIVE_MEMORY);
    return 0;
}
"""


@pytest.fixture(scope="module")
def header(tmp_path_factory) -> dict:
    """Every layout fact and constant of the headers, as the C compiler sees them."""
    d = tmp_path_factory.mktemp("probe")
    (d / "probe.c").write_text(PROBE)
    subprocess.run(
        ["clang-14", "-std=c11", "-I", str(INCLUDE), "-o", str(d / "probe"), str(d / "probe.c")],
        check=True,
        capture_output=True,
        timeout=60,
    )
    out = subprocess.run([str(d / "probe")], check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def test_init_args_struct_layout(header):
    assert header["sizeof"] == abi.INIT_ARGS_SIZE == 44
    assert header["alignof"] == 4
    offsets = {k[4:]: v for k, v in header.items() if k.startswith("off_")}
    assert offsets == {
        "abi_version": 0,
        "role": 4,
        "sample_rate": 8,
        "channels": 12,
        "sample_format": 14,
        "max_frames": 16,
        "in_offset": 20,
        "out_offset": 24,
        "buffer_bytes": 28,
        "flags": 32,
        "reserved0": 36,
        "reserved1": 40,
    }


def test_packed_init_args_decode_with_the_header_offsets(header):
    packed = abi.pack_init_args(abi.Role.OUTPUT_SINK, 44100, 6, 333, 2048, None, abi.SampleFormat.I16LE)

    def u32(off: int) -> int:
        return int.from_bytes(packed[off : off + 4], "little")

    def u16(off: int) -> int:
        return int.from_bytes(packed[off : off + 2], "little")

    assert u32(header["off_role"]) == 2 and u32(header["off_sample_rate"]) == 44100
    assert u16(header["off_channels"]) == 6 and u16(header["off_sample_format"]) == 2
    assert u32(header["off_max_frames"]) == 333 and u32(header["off_out_offset"]) == 0
    assert u32(header["off_buffer_bytes"]) == 333 * 6 * 2


def test_constants_agree_with_abi_py(header):
    assert header["ABI_VERSION"] == abi.ABI_VERSION
    assert (header["ROLE_DSP"], header["ROLE_SINK"]) == (abi.Role.DSP_TRANSFORM, abi.Role.OUTPUT_SINK)
    assert (header["F32"], header["I16"], header["I32"]) == tuple(abi.SampleFormat)
    assert [header[k] for k in ("EOF", "DRAINED", "NEED_RESET", "SOFT_ERROR")] == list(abi.Flag)
    assert [header[f"E{i}"] for i in range(1, 7)] == list(abi.ErrorCode)
    assert (header["SCRATCH_SIZE"], header["S_ARGS"], header["S_CTX"], header["S_FRAMES"], header["S_FLAGS"]) == (
        abi.HOST_SCRATCH_SIZE,
        abi.SCRATCH_INIT_ARGS,
        abi.SCRATCH_OUT_CTX,
        abi.SCRATCH_OUT_FRAMES,
        abi.SCRATCH_OUT_FLAGS,
    )
    assert (header["MAX_FRAMES"], header["MAX_CHANNELS"], header["MAX_INSTANCES"], header["MAX_RATE"]) == (
        abi.SDK_MAX_FRAMES,
        abi.SDK_MAX_CHANNELS,
        abi.SDK_MAX_INSTANCES,
        abi.SDK_MAX_SAMPLE_RATE,
    )
    assert (header["NAMES"], header["SCRATCH"], header["IN"], header["OUT"], header["END"]) == (
        abi.SDK_NAMES_OFFSET,
        abi.SDK_SCRATCH_OFFSET,
        abi.SDK_IN_OFFSET,
        abi.SDK_OUT_OFFSET,
        abi.SDK_ARENA_END,
    )
    assert header["IN"] - header["SCRATCH"] == abi.HOST_SCRATCH_SIZE
    assert header["exports"] == [
        abi.DEFAULT_MEMORY_EXPORT,
        abi.DEFAULT_INIT_EXPORT,
        abi.DEFAULT_PROCESS_EXPORT,
        abi.DEFAULT_RESET_EXPORT,
        abi.DEFAULT_DROP_EXPORT,
        abi.PARAM_NAMES_EXPORT,
        abi.SET_PARAM_EXPORT,
        abi.NATIVE_MEMORY_EXPORT,
    ]


@pytest.mark.parametrize("target", ["--target=wasm32", "--target=x86_64-linux-gnu"])
def test_static_asserts_hold_on_both_targets(tmp_path, target):
    src = tmp_path / "t.c"
    src.write_text('#include "stellatune_hotpath.h"\n#include "stellatune_sdk.h"\n')
    subprocess.run(
        ["clang-14", target, "-std=c11", "-fsyntax-only", "-Wall", "-Werror", "-I", str(INCLUDE), str(src)],
        check=True,
        capture_output=True,
        timeout=60,
    )


def test_a_broken_layout_fails_to_compile(tmp_path):
    """The static asserts can fail: packing the struct to 2 bytes breaks alignment."""
    src = tmp_path / "t.c"
    src.write_text('#pragma pack(2)\n#include "stellatune_hotpath.h"\n')
    proc = subprocess.run(
        ["clang-14", "-std=c11", "-fsyntax-only", "-I", str(INCLUDE), str(src)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0 and "4-byte aligned" in proc.stderr


# --- CoreModuleSpec.problems() ------------------------------------------------------------

GOOD = abi.sdk_core_module_spec("wasm/gain.hotpath.wasm", abi.Role.DSP_TRANSFORM, 2)


def with_buffer(**changes) -> abi.CoreModuleSpec:
    return replace(GOOD, buffer=replace(GOOD.buffer, **changes))


def test_the_sdk_spec_is_fine():
    assert GOOD.problems() == []
    assert abi.sdk_core_module_spec("wasm/s.hotpath.wasm", abi.Role.OUTPUT_SINK, 8).problems() == []


@pytest.mark.parametrize(
    "spec,fragment",
    [
        (replace(GOOD, abi_version=2), "abi-version 2"),
        (replace(GOOD, wasm_rel_path="  "), "wasm-rel-path is blank"),
        (replace(GOOD, memory_export=""), "memory-export is blank"),
        (replace(GOOD, init_export=""), "init-export is blank"),
        (replace(GOOD, process_export=""), "process-export is blank"),
        (with_buffer(max_frames=0), "max-frames"),
        (with_buffer(channels=0), "channels"),
        (with_buffer(in_offset=32), "host scratch"),
        (with_buffer(in_offset=0), "host scratch"),
        (with_buffer(out_offset=None), "needs out-offset"),
        (with_buffer(out_offset=abi.SDK_IN_OFFSET + 1024), "overlap"),
        (with_buffer(in_offset=abi.SDK_OUT_OFFSET, out_offset=abi.SDK_OUT_OFFSET - 4096 * 2 * 4 + 16), "overlap"),
        (
            with_buffer(in_offset=abi.SDK_OUT_OFFSET, out_offset=abi.SDK_OUT_OFFSET - 4096 * 2 * 4 - 32),
            "overlaps the host scratch",
        ),
        (with_buffer(out_offset=abi.SDK_IN_OFFSET + 32770), "aligned"),
        (with_buffer(in_offset=0xFFFF_FFF0), "32-bit"),
    ],
)
def test_problems_catch_bad_specs(spec, fragment):
    problems = spec.problems()
    assert any(fragment in p for p in problems), problems


def test_problems_lists_every_problem():
    bad = replace(GOOD, abi_version=0, init_export="", buffer=replace(GOOD.buffer, channels=0))
    assert len(bad.problems()) == 3
