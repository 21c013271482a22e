"""The compiled core builds, matches wasmtime-py's C layouts and uses wasmtime-py's library copy."""

import ctypes
import subprocess
import sys
from pathlib import Path

import pytest
import wasmtime._bindings as bindings
import wasmtime._ffi as ffi

from stellatune.engine import _core  # the package import resolves the C function table


def test_struct_sizes_match_wasmtime_py():
    assert (
        _core.struct_sizes()
        == {
            "func": ctypes.sizeof(bindings.wasmtime_func_t),
            "memory": ctypes.sizeof(bindings.wasmtime_memory_t),
            "val_raw": ctypes.sizeof(bindings.wasmtime_val_raw_t),
        }
        == {"func": 16, "memory": 24, "val_raw": 16}
    )


def test_only_one_copy_of_libwasmtime_is_mapped():
    maps = Path("/proc/self/maps").read_text().splitlines()
    paths = {line.split()[-1] for line in maps if "libwasmtime" in line}
    assert paths == {str(Path(ffi.filename).resolve())} or paths == {str(ffi.filename)}


def test_resolving_a_library_that_is_not_loaded_fails_cleanly(tmp_path):
    _core._resolved = False
    try:
        with pytest.raises(RuntimeError, match="is not loaded"):
            _core.resolve_wasmtime(str(tmp_path / "nope.so"), 10)
    finally:
        _core._resolved = True


def test_portaudio_init_does_not_print_alsa_probe_chatter():
    # Without a sound card, ALSA's probe printed ~60 "ALSA lib ..." lines at Pa_Initialize.
    done = subprocess.run(
        [sys.executable, "-c", "from stellatune.engine import list_devices; list_devices()"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"JACK_NO_START_SERVER": "1", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    assert "ALSA lib" not in done.stderr
