"""The exception taxonomy of stellatune.

Every error the library raises on purpose is a :class:`StellatuneError`. The CLI maps the
families below to exit codes; callers catch the narrowest class they can act on.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

__all__ = [
    "StellatuneError",
    "ManifestProblem",
    "ManifestError",
    "PackageError",
    "UnsafeArtifactError",
    "ArtifactLimitError",
    "PluginNotInstalledError",
    "PluginBuildError",
    "UnsupportedArtifactError",
    "NoValidManifestError",
    "RuntimeStateError",
    "ActivationError",
    "LifecycleFailures",
    "HostGrantError",
    "PluginErrorCode",
    "PluginError",
    "PluginTrap",
    "PluginTimeout",
    "PluginContractError",
    "ConfigRejected",
    "SidecarError",
    "RingFormatError",
    "EngineError",
    "HotPathAbiError",
    "HotPathMemoryLimitError",
    "AudioDeviceError",
    "PortAudioError",
    "ServiceError",
    "RpcRequestError",
    "RpcCallError",
    "LibraryError",
    "CatalogError",
    "TrackFailure",
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


class UnsupportedArtifactError(PackageError):
    """The artifact is well-formed but uses something we do not read (encryption, bzip2, ...)."""


class NoValidManifestError(PackageError):
    """An artifact holds no valid ``plugin.json``; ``candidates`` pairs each invalid one (path
    relative to the artifact) with its :class:`ManifestError`."""

    def __init__(self, message: str, candidates: list[tuple[str, ManifestError]]):
        self.candidates = candidates
        super().__init__(message)


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


class LifecycleFailures(RuntimeStateError):
    """Some plugins could not be deactivated; ``failures`` maps each plugin id to its error."""

    def __init__(self, action: str, failures: Mapping[str, BaseException]):
        self.failures = dict(failures)
        detail = "; ".join(f"{pid}: {exc}" for pid, exc in sorted(self.failures.items()))
        super().__init__(f"{action} failed for {len(self.failures)} plugin(s): {detail}")


class HostGrantError(StellatuneError):
    """A host grant (``WasmPluginRuntime.grant``, ``stellatune plugins grant``) breaks a rule of
    the manifest's ``permissions`` block; ``problems`` lists each one, its ``json_path`` naming
    the field (``http``, ``tcp``, ``files``, ``sidecars``, ``env``). The CLI exits 2 (invalid input)."""

    def __init__(self, plugin_id: str, problems: Sequence[ManifestProblem]):
        self.plugin_id = plugin_id
        self.problems = list(problems)
        detail = "; ".join(str(p) for p in self.problems)
        super().__init__(f"invalid host grant for {plugin_id}: {detail}")


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


class ConfigRejected(PluginError):
    """The plugin planned ``reject`` for a new config; the old config stays in force."""

    def __init__(self, reason: str, **where: Optional[str]):
        self.reason = reason
        super().__init__(PluginErrorCode.INVALID_ARG, f"config rejected: {reason}", **where)


# --- host services -------------------------------------------------------------------------


class SidecarError(StellatuneError):
    """A sidecar, or a transport the host shares with it, is unusable.

    The host turns these into an ``io`` :class:`PluginError` at the WIT boundary: the plugin
    sees a failed call, never a host exception.
    """


class RingFormatError(SidecarError):
    """A ring file is not a valid STMR v1 ring (the sidecar shares these files and can spoil
    them), or a ring was asked for with a capacity outside the supported range."""


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


class PortAudioError(AudioDeviceError):
    """A PortAudio call failed: ``what`` names the call, ``code`` is its PaError (as ``pa_code``
    too) and ``text`` PortAudio's description of it.

    Raised by the Cython core (``stellatune.engine._core``), which alone can ask PortAudio for
    the text; being an :class:`AudioDeviceError`, it needs no translation on its way out.
    """

    def __init__(self, what: str, code: int, text: str):
        self.what = what
        self.code = code
        self.text = text
        super().__init__(f"{what}: {text}", code)


# --- library import ------------------------------------------------------------------------


class LibraryError(StellatuneError):
    """The library import (stellatune.library) failed as a whole: not one file's failure."""


class CatalogError(LibraryError):
    """The SQLite catalog cannot be opened, migrated or queried as asked."""


class TrackFailure(LibraryError):
    """One file could not be analysed; ``code`` is the catalog's error code (docs/library.md).

    Raised and caught inside the analyser: a failing file becomes a row, never an aborted run.
    """

    def __init__(self, code: str, message: str):
        self.code = code
        self.message = message
        super().__init__(message)


# --- service (stellatune serve) ------------------------------------------------------------


class ServiceError(StellatuneError):
    """The control API of ``stellatune serve`` refused or failed a request (docs/service.md)."""


class RpcRequestError(ServiceError):
    """Server side: a request answered with a JSON-RPC error. ``failure`` is the taxonomy's
    ``Failure`` (code, severity, hint, where); ``rpc_code`` the JSON-RPC code."""

    def __init__(self, failure: Any, rpc_code: int):
        self.failure = failure
        self.rpc_code = rpc_code
        #: The id of the request, when it could be read (the reply carries it).
        self.request_id: Any = None
        #: True when the request was a well-formed notification: no reply at all.
        self.notify = False
        super().__init__(str(getattr(failure, "message", failure)))


class RpcCallError(ServiceError):
    """Client side: the service answered a call with a JSON-RPC error; ``code`` is the JSON-RPC
    code, ``data`` the failure (``data["code"]`` the taxonomy's), ``error`` the whole object."""

    def __init__(self, error: Mapping[str, Any]):
        self.error = dict(error)
        self.code = int(error.get("code", 0))
        self.data: dict[str, Any] = dict(error.get("data") or {})
        super().__init__(str(error.get("message", "error")))
