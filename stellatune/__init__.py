"""stellatune: sandboxed WebAssembly audio plugins for a music player's backend.

The top level holds the exception tree and :class:`Pipeline`, the pedalboard-style chain of
installed DSP plugins. The planes live in their own modules: ``stellatune.manifest``,
``stellatune.package``, ``stellatune.runtime``, ``stellatune.executor``, ``stellatune.host``,
``stellatune.engine`` and ``stellatune.compose`` (see docs/architecture.md).
"""

from typing import Any

from .errors import *  # noqa: F403
from .errors import __all__ as _errors_all

__version__ = "0.1.0"
__all__ = ["__version__", "Pipeline", "Player", "DspPlugin", *_errors_all]  # noqa: F405 (the two are lazy: __getattr__)


def __getattr__(name: str) -> Any:
    # Lazy, so that importing the package plane (manifest, package) never loads wasmtime or
    # the engine extension.
    if name in ("Pipeline", "Player", "DspPlugin"):
        from . import compose

        return getattr(compose, name)
    raise AttributeError(f"module 'stellatune' has no attribute {name!r}")
