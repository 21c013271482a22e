"""The exception taxonomy of stellatune.

Every error the library raises on purpose is a :class:`StellatuneError`. The CLI maps the
families below to exit codes; callers catch the narrowest class they can act on.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

__all__ = [
    "StellatuneError",
    "ManifestProblem",
    "ManifestError",
    "PackageError",
    "UnsafeArtifactError",
    "ArtifactLimitError",
    "PluginNotInstalledError",
    "PluginBuildError",
    "RuntimeStateError",
    "ActivationError",
    "PluginErrorCode",
    "PluginError",
    "PluginTrap",
    "PluginTimeout",
    "PluginContractError",
    "EngineError",
    "HotPathAbiError",
    "HotPathMemoryLimitError",
    "AudioDeviceError",
]


class StellatuneError(Exception):
    """Base class of every error stellatune raises on purpose."""


# --- package plane -------------------------------------------------------------------------


@dataclass(frozen=True)
class ManifestProblem:
    """One broken rule in a ``plugin.json``."""

    json_path: str
    """Where, e.g. ``components[1].abilities[0].type_id`` (``$`` for the document itself)."""
    rule: str
    """Short machine-readable rule name, e.g. ``not-blank`` or ``unique``."""
    message: str
    """What is wrong, for a person."""

    def __str__(self) -> str:
        return f"{self.json_path}: {self.message} [{self.rule}]"


class ManifestError(StellatuneError):
    """A ``plugin.json`` broke one or more rules; ``problems`` lists every one of them."""

    def __init__(self, problems: Sequence[ManifestProblem], file: Optional[Path] = None):
        self.problems = list(problems)
        self.file = file
        where = f"{file}: " if file else ""
        lines = "; ".join(str(p) for p in self.problems)
        super().__init__(f"{where}invalid plugin manifest: {lines}")


class PackageError(StellatuneError):
    """Installing, listing or uninstalling a plugin package failed."""


class UnsafeArtifactError(PackageError):
    """An artifact holds an entry that could escape the plugins directory or is not a plain file."""


class ArtifactLimitError(PackageError):
    """An artifact is too large (uncompressed bytes or entry count): a zip bomb, or close to one."""


class PluginNotInstalledError(PackageError):
    """No installed plugin has that id."""


class PluginBuildError(PackageError):
    """A plugin could not be built (``stellatune plugins build``, the C SDK): not a plugin
    directory, a missing tool, or a compiler failed. ``log`` holds the failing tool's output.
    """

    def __init__(self, message: str, log: str = ""):
        self.message = message
        self.log = log
        super().__init__(f"{message}\n{log}".rstrip() if log else message)


# --- runtime plane -------------------------------------------------------------------------


class RuntimeStateError(StellatuneError):
    """A runtime call does not fit the runtime's state (shut down, plugin not active, ...)."""


class ActivationError(StellatuneError):
    """A plugin could not be activated (bad world, missing component, failed on-enable, ...)."""

    def __init__(self, message: str, plugin_id: Optional[str] = None):
        self.plugin_id = plugin_id
        super().__init__(f"{plugin_id}: {message}" if plugin_id else message)


# --- plugin calls --------------------------------------------------------------------------


class PluginErrorCode(str, enum.Enum):
    """The cases of the WIT ``plugin-error`` variant."""

    INVALID_ARG = "invalid-arg"
    NOT_FOUND = "not-found"
    IO = "io"
    TIMEOUT = "timeout"
    UNSUPPORTED = "unsupported"
    DENIED = "denied"
    INTERNAL = "internal"


class PluginError(StellatuneError):
    """A plugin call failed: the guest returned ``plugin-error``, or a host import refused.

    ``code`` is the ``plugin-error`` case; ``plugin_id`` and ``capability`` say where.
    """

    def __init__(
        self,
        code: PluginErrorCode,
        message: str,
        *,
        plugin_id: Optional[str] = None,
        capability: Optional[str] = None,
    ):
        self.code = PluginErrorCode(code)
        self.message = message
        self.plugin_id = plugin_id
        self.capability = capability
        where = "/".join(x for x in (plugin_id, capability) if x)
        super().__init__(f"{where + ': ' if where else ''}{self.code.value}: {message}")


class PluginTrap(PluginError):
    """The guest trapped (unreachable, out-of-bounds, stack overflow, ...); its instance is gone."""

    def __init__(self, message: str, **where: Optional[str]):
        super().__init__(PluginErrorCode.INTERNAL, f"trap: {message}", **where)


class PluginTimeout(PluginError):
    """A call ran past its deadline and was interrupted."""

    def __init__(self, message: str, **where: Optional[str]):
        super().__init__(PluginErrorCode.TIMEOUT, message, **where)


class PluginContractError(PluginError):
    """A plugin answered with a value outside what the host accepts (a sample rate of 0 or
    4294967295 Hz, 1000 channels, a path with a NUL byte, megabytes of title...).

    ``field`` names the value (``decoder-info.sample-rate``); the code is ``internal``: the
    fault is the plugin's, and the call that produced the value is refused as a whole.
    """

    def __init__(self, field: str, message: str, **where: Optional[str]):
        self.field = field
        super().__init__(PluginErrorCode.INTERNAL, f"{field} {message}", **where)


# --- engine --------------------------------------------------------------------------------


class EngineError(StellatuneError):
    """The real-time engine could not be set up or driven."""


class HotPathAbiError(EngineError):
    """A core module does not follow hot-path ABI v1 (docs/hot-path-abi.md)."""


class HotPathMemoryLimitError(HotPathAbiError):
    """A core module needs more linear memory than the hot-path cap allows (docs/engine.md).

    ``cap_bytes`` is the cap in force; ``needed_bytes`` what the module declared, or None when
    the cap was hit by a ``memory.grow`` in ``init`` (the amount asked for is not observable).
    """

    def __init__(self, message: str, cap_bytes: int, needed_bytes: Optional[int] = None):
        self.cap_bytes = cap_bytes
        self.needed_bytes = needed_bytes
        super().__init__(message)


class AudioDeviceError(EngineError):
    """PortAudio failed: no device, stream could not open or start."""

    def __init__(self, message: str, pa_code: Optional[int] = None):
        self.pa_code = pa_code
        super().__init__(message if pa_code is None else f"{message} (PortAudio error {pa_code})")
