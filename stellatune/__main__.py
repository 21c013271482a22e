"""``python -m stellatune``: print what a bug report needs (versions, libraries, directories).

Each probe is independent and reports "unavailable (why)" instead of failing, because this is
what people run when something is broken.
"""

from __future__ import annotations

import ctypes.util
import importlib.metadata
import platform
import sys
from collections.abc import Callable


def _wasmtime() -> str:
    import wasmtime

    return importlib.metadata.version("wasmtime") + f" ({wasmtime.__name__} at {wasmtime.__path__[0]})"


def _libwasmtime() -> str:
    from wasmtime import _ffi

    return str(_ffi.filename)


def _portaudio() -> str:
    # pyaudio's version query does not initialise PortAudio, so this opens no device.
    import pyaudio

    library = ctypes.util.find_library("portaudio") or "bundled with pyaudio"
    return f"{pyaudio.get_portaudio_version_text()} ({library})"


def _engine() -> str:
    import stellatune.engine._core as _core

    return f"built ({_core.__file__})"


def _plugins_dir() -> str:
    from stellatune.paths import default_plugins_dir

    return str(default_plugins_dir())


def _probe(fn: Callable[[], str]) -> str:
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 (a diagnostic reports every failure instead of stopping
        return f"unavailable ({type(exc).__name__}: {exc})"


def diagnostics() -> list[tuple[str, str]]:
    """The diagnostic lines as (label, value) pairs."""
    from stellatune import __version__

    return [
        ("stellatune", __version__),
        ("python", f"{platform.python_version()} ({sys.executable})"),
        ("platform", platform.platform()),
        ("wasmtime", _probe(_wasmtime)),
        ("libwasmtime", _probe(_libwasmtime)),
        ("portaudio", _probe(_portaudio)),
        ("engine extension", _probe(_engine)),
        ("plugins dir", _probe(_plugins_dir)),
    ]


def main() -> int:
    lines = diagnostics()
    width = max(len(label) for label, _ in lines)
    for label, value in lines:
        print(f"{label.ljust(width)}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
