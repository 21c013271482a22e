"""The package plane: install plugin artifacts, list them, uninstall them.

An artifact (a directory or a ``.zip``) is staged safely, must hold exactly one valid
``plugin.json``, and is swapped into ``plugins/<id>`` atomically with an ``.install.json``
receipt. Discovery re-validates every installed manifest against the files on disk.
"""

from ..errors import NoValidManifestError, UnsupportedArtifactError
from .archive import ArtifactLimits
from .receipt import (
    MARKER_FILE_NAME,
    RECEIPT_FILE_NAME,
    InstallReceipt,
    InstallState,
    UninstallMarker,
    component_digest,
)
from .store import (
    DiscoveredPlugin,
    DiscoveryResult,
    InstalledPlugin,
    PendingUninstall,
    StagedInstall,
    discover_plugins,
    install_from_artifact,
    install_keeping_previous,
    list_installed,
    uninstall_by_id,
)

__all__ = [
    "ArtifactLimits",
    "UnsupportedArtifactError",
    "NoValidManifestError",
    "InstallState",
    "InstallReceipt",
    "UninstallMarker",
    "InstalledPlugin",
    "DiscoveredPlugin",
    "PendingUninstall",
    "DiscoveryResult",
    "RECEIPT_FILE_NAME",
    "MARKER_FILE_NAME",
    "install_from_artifact",
    "install_keeping_previous",
    "StagedInstall",
    "discover_plugins",
    "list_installed",
    "uninstall_by_id",
    "component_digest",
]
