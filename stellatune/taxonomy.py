"""The failure taxonomy: one enum of error codes, each with a severity and a hint.

Every failure the library reports, as an exception, an event, a JSON-RPC error or a CLI
message, carries one :class:`ErrorCode`. :func:`classify` maps an exception (the classes of
:mod:`stellatune.errors`, narrowest first) to a :class:`Failure`: code, severity, hint and
where (plugin id, capability). docs/errors.md holds the table; a test keeps both in sync.

This module imports only :mod:`stellatune.errors`, so any plane may use it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Optional

from . import errors as e

__all__ = ["Severity", "ErrorCode", "Failure", "classify", "failure", "TABLE"]


class Severity(str, enum.Enum):
    """How bad it is (events and errors share the scale)."""

    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"


class ErrorCode(str, enum.Enum):
    """Every kind of failure, by who acts on it."""

    # requests (the control API)
    PARSE_ERROR = "parse-error"
    INVALID_REQUEST = "invalid-request"
    METHOD_NOT_FOUND = "method-not-found"
    INVALID_PARAMS = "invalid-params"
    MESSAGE_TOO_LARGE = "message-too-large"
    UNAUTHORIZED = "unauthorized"
    # package plane
    MANIFEST_INVALID = "manifest-invalid"
    NO_VALID_MANIFEST = "no-valid-manifest"
    ARTIFACT_UNSAFE = "artifact-unsafe"
    ARTIFACT_TOO_LARGE = "artifact-too-large"
    ARTIFACT_UNSUPPORTED = "artifact-unsupported"
    PLUGIN_NOT_INSTALLED = "plugin-not-installed"
    PLUGIN_BUILD_FAILED = "plugin-build-failed"
    PACKAGE_FAILED = "package-failed"
    # runtime plane
    RUNTIME_STATE = "runtime-state"
    LIFECYCLE_FAILED = "lifecycle-failed"
    ACTIVATION_FAILED = "activation-failed"
    GRANT_INVALID = "grant-invalid"
    # plugin calls
    PLUGIN_ERROR = "plugin-error"
    PLUGIN_DENIED = "plugin-denied"
    PLUGIN_TRAP = "plugin-trap"
    PLUGIN_TIMEOUT = "plugin-timeout"
    PLUGIN_CONTRACT = "plugin-contract"
    CONFIG_REJECTED = "config-rejected"
    # host services
    SIDECAR_FAILED = "sidecar-failed"
    RING_FORMAT = "ring-format"
    # engine
    ENGINE_FAILED = "engine-failed"
    HOTPATH_ABI = "hotpath-abi"
    HOTPATH_MEMORY_LIMIT = "hotpath-memory-limit"
    AUDIO_DEVICE = "audio-device"
    # library import
    LIBRARY_FAILED = "library-failed"
    CATALOG_FAILED = "catalog-failed"
    TRACK_FAILED = "track-failed"
    # the service's clients
    SERVICE_FAILED = "service-failed"
    # anything else
    INTERNAL = "internal"

    @property
    def severity(self) -> Severity:
        return TABLE[self][0]

    @property
    def hint(self) -> str:
        return TABLE[self][1]


_W, _E, _C = Severity.WARNING, Severity.ERROR, Severity.CRITICAL

#: code → (severity, hint). docs/errors.md is this table.
TABLE: dict[ErrorCode, tuple[Severity, str]] = {
    ErrorCode.PARSE_ERROR: (_W, "send one JSON object per line (UTF-8)"),
    ErrorCode.INVALID_REQUEST: (_W, 'send {"jsonrpc": "2.0", "method": ..., "params": {...}, "id": ...}'),
    ErrorCode.METHOD_NOT_FOUND: (_W, "see docs/service.md for the method list"),
    ErrorCode.INVALID_PARAMS: (_W, "check the method's parameters and their types (docs/service.md)"),
    ErrorCode.MESSAGE_TOO_LARGE: (_W, "keep each request line under 1 MiB"),
    ErrorCode.UNAUTHORIZED: (_E, 'send {"auth": TOKEN} first, with the token of --token-file'),
    ErrorCode.MANIFEST_INVALID: (_E, "fix every problem listed in plugin.json (docs/manifest.md)"),
    ErrorCode.NO_VALID_MANIFEST: (_E, "the artifact needs exactly one valid plugin.json"),
    ErrorCode.ARTIFACT_UNSAFE: (_E, "rebuild the artifact: no absolute paths, '..', links or devices"),
    ErrorCode.ARTIFACT_TOO_LARGE: (_E, "the artifact exceeds the size or entry limits; shrink it"),
    ErrorCode.ARTIFACT_UNSUPPORTED: (_E, "use a plain directory or an unencrypted deflate/stored zip"),
    ErrorCode.PLUGIN_NOT_INSTALLED: (_W, "check the id with `stellatune plugins list`"),
    ErrorCode.PLUGIN_BUILD_FAILED: (_E, "read the tool's log; `stellatune doctor` checks the toolchain"),
    ErrorCode.PACKAGE_FAILED: (_E, "check the plugins directory's permissions and free space"),
    ErrorCode.RUNTIME_STATE: (_E, "the runtime or player is shut down or busy; restart it"),
    ErrorCode.LIFECYCLE_FAILED: (_E, "a plugin failed to deactivate; see its log (`plugins info`)"),
    ErrorCode.ACTIVATION_FAILED: (_E, "see the plugin's last error and log (`stellatune plugins info ID`)"),
    ErrorCode.GRANT_INVALID: (_E, "a grant must fit the manifest's permissions rules (docs/host.md)"),
    ErrorCode.PLUGIN_ERROR: (_E, "the plugin reported an error; see its log"),
    ErrorCode.PLUGIN_DENIED: (_W, "grant the access with `stellatune plugins grant` if it is wanted"),
    ErrorCode.PLUGIN_TRAP: (_E, "the plugin crashed (trap); report it to its author; it was bypassed"),
    ErrorCode.PLUGIN_TIMEOUT: (_E, "the plugin ran past its deadline; a lighter config or a faster plugin"),
    ErrorCode.PLUGIN_CONTRACT: (_E, "the plugin returned a value out of range; report it to its author"),
    ErrorCode.CONFIG_REJECTED: (_W, "the plugin refused the config; the old one stays in force"),
    ErrorCode.SIDECAR_FAILED: (_E, "the plugin's helper process failed; see the sidecar events"),
    ErrorCode.RING_FORMAT: (_E, "a shared ring file is corrupt; the sidecar is restarted"),
    ErrorCode.ENGINE_FAILED: (_E, "check the output, sample rate and chain (`stellatune doctor`)"),
    ErrorCode.HOTPATH_ABI: (_E, "the core module breaks hot-path ABI v1 (docs/hot-path-abi.md)"),
    ErrorCode.HOTPATH_MEMORY_LIMIT: (_E, "raise limits.hot_path_memory_mib in plugin.json or shrink the module"),
    ErrorCode.AUDIO_DEVICE: (_C, "check the device (`stellatune devices`, `stellatune doctor`)"),
    ErrorCode.LIBRARY_FAILED: (_E, "the library import failed as a whole; see docs/library.md"),
    ErrorCode.CATALOG_FAILED: (_E, "the SQLite catalog cannot be used; check its path and permissions"),
    ErrorCode.TRACK_FAILED: (_W, "one file could not be analysed; its catalog row says why"),
    ErrorCode.SERVICE_FAILED: (_E, "the service answered with an error; its data.code says which"),
    ErrorCode.INTERNAL: (_C, "a bug: report it with `python -m stellatune` output"),
}

# Narrowest first: the first class in an exception's MRO found here wins.
_BY_CLASS: dict[type[BaseException], ErrorCode] = {
    e.ManifestError: ErrorCode.MANIFEST_INVALID,
    e.NoValidManifestError: ErrorCode.NO_VALID_MANIFEST,
    e.UnsafeArtifactError: ErrorCode.ARTIFACT_UNSAFE,
    e.ArtifactLimitError: ErrorCode.ARTIFACT_TOO_LARGE,
    e.UnsupportedArtifactError: ErrorCode.ARTIFACT_UNSUPPORTED,
    e.PluginNotInstalledError: ErrorCode.PLUGIN_NOT_INSTALLED,
    e.PluginBuildError: ErrorCode.PLUGIN_BUILD_FAILED,
    e.PackageError: ErrorCode.PACKAGE_FAILED,
    e.LifecycleFailures: ErrorCode.LIFECYCLE_FAILED,
    e.RuntimeStateError: ErrorCode.RUNTIME_STATE,
    e.ActivationError: ErrorCode.ACTIVATION_FAILED,
    e.HostGrantError: ErrorCode.GRANT_INVALID,
    e.PluginTrap: ErrorCode.PLUGIN_TRAP,
    e.PluginTimeout: ErrorCode.PLUGIN_TIMEOUT,
    e.PluginContractError: ErrorCode.PLUGIN_CONTRACT,
    e.ConfigRejected: ErrorCode.CONFIG_REJECTED,
    e.PluginError: ErrorCode.PLUGIN_ERROR,
    e.RingFormatError: ErrorCode.RING_FORMAT,
    e.SidecarError: ErrorCode.SIDECAR_FAILED,
    e.HotPathMemoryLimitError: ErrorCode.HOTPATH_MEMORY_LIMIT,
    e.HotPathAbiError: ErrorCode.HOTPATH_ABI,
    e.AudioDeviceError: ErrorCode.AUDIO_DEVICE,
    e.EngineError: ErrorCode.ENGINE_FAILED,
    e.CatalogError: ErrorCode.CATALOG_FAILED,
    e.TrackFailure: ErrorCode.TRACK_FAILED,
    e.LibraryError: ErrorCode.LIBRARY_FAILED,
    e.ServiceError: ErrorCode.SERVICE_FAILED,
}


@dataclass(frozen=True)
class Failure:
    """One classified failure: what, how bad, what to do, and where."""

    code: ErrorCode
    message: str
    severity: Severity
    hint: str
    plugin_id: Optional[str] = None
    capability: Optional[str] = None
    action: Optional[str] = None

    def to_json(self) -> dict[str, Any]:
        """The ``data`` of a JSON-RPC error, and of an error event."""
        return {
            "code": self.code.value,
            "message": self.message,
            "plugin_id": self.plugin_id,
            "capability": self.capability,
            "action": self.action,
            "severity": self.severity.value,
            "hint": self.hint,
        }


def failure(code: ErrorCode, message: str, *, action: Optional[str] = None, **where: Optional[str]) -> Failure:
    """A :class:`Failure` of ``code`` with its table severity and hint."""
    severity, hint = TABLE[code]
    return Failure(code, message, severity, hint, where.get("plugin_id"), where.get("capability"), action)


def code_of(exc: BaseException) -> ErrorCode:
    """The code of an exception: by class (narrowest first), ``plugin-denied`` for a
    ``PluginError`` whose WIT code is ``denied``; ``internal`` for anything unexpected."""
    if type(exc) is e.PluginError and exc.code is e.PluginErrorCode.DENIED:
        return ErrorCode.PLUGIN_DENIED
    for cls in type(exc).__mro__:
        code = _BY_CLASS.get(cls)
        if code is not None:
            return code
    return ErrorCode.INTERNAL


def classify(exc: BaseException, *, action: Optional[str] = None) -> Failure:
    """The :class:`Failure` an exception stands for (``action``: what was being done)."""
    if isinstance(exc, e.RpcRequestError) and isinstance(exc.failure, Failure):
        return exc.failure
    plugin_id = getattr(exc, "plugin_id", None)
    capability = getattr(exc, "capability", None)
    return failure(
        code_of(exc),
        str(exc) or type(exc).__name__,
        action=action,
        plugin_id=plugin_id if isinstance(plugin_id, str) else None,
        capability=capability if isinstance(capability, str) else None,
    )
