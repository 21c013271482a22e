"""The WIT ``sidecar`` records, the env-variable names of endpoints, and transport ordering."""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Optional

__all__ = [
    "LaunchScope",
    "TransportKind",
    "TransportOption",
    "LaunchSpec",
    "ENV_PREFIX",
    "control_env_names",
    "data_env_names",
    "normalise_role",
    "order_options",
]

ENV_PREFIX = "STELLATUNE_SIDECAR_"


class LaunchScope(str, enum.Enum):
    INSTANCE = "instance"
    PACKAGE_SHARED = "package-shared"


class TransportKind(str, enum.Enum):
    STDIO = "stdio"
    NAMED_PIPE = "named-pipe"
    UNIX_SOCKET = "unix-socket"
    LOOPBACK_TCP = "loopback-tcp"
    SHARED_MEMORY_RING = "shared-memory-ring"

    @property
    def env_suffixes(self) -> tuple[str, ...]:
        """Env-name suffixes, canonical first (the original accepts the short ones too)."""
        return _SUFFIXES[self]


_SUFFIXES = {
    TransportKind.STDIO: ("STDIO",),
    TransportKind.NAMED_PIPE: ("NAMED_PIPE", "PIPE"),
    TransportKind.UNIX_SOCKET: ("UNIX_SOCKET", "UNIX"),
    TransportKind.LOOPBACK_TCP: ("LOOPBACK_TCP", "TCP"),
    TransportKind.SHARED_MEMORY_RING: ("SHARED_MEMORY_RING", "SHM"),
}


@dataclass(frozen=True)
class TransportOption:
    """WIT ``transport-option``. ``max_frame_bytes`` sizes a shared-memory ring."""

    kind: TransportKind
    priority: int = 0
    max_frame_bytes: Optional[int] = None


@dataclass(frozen=True)
class LaunchSpec:
    """WIT ``launch-spec``. ``env`` is what the plugin adds; the host environment is *not*
    inherited (only names in ``permissions.env`` pass through)."""

    executable: str
    scope: LaunchScope = LaunchScope.INSTANCE
    args: Sequence[str] = ()
    preferred_control: Sequence[TransportOption] = ()
    preferred_data: Sequence[TransportOption] = ()
    env: Sequence[tuple[str, str]] = field(default=())

    def signature(self) -> tuple:
        """What makes two package-shared launches the same process (env sorted)."""
        opts = lambda xs: tuple((TransportKind(o.kind).value, o.priority, o.max_frame_bytes) for o in xs)  # noqa: E731
        return (
            LaunchScope(self.scope).value,
            self.executable.strip(),
            tuple(self.args),
            opts(self.preferred_control),
            opts(self.preferred_data),
            tuple(sorted(self.env)),
        )


def normalise_role(role: str) -> str:
    """``"pcm out"`` → ``"PCM_OUT"``: uppercase, non-alphanumerics to ``_``, trimmed of ``_``."""
    return re.sub(r"[^A-Z0-9]", "_", role.strip().upper()).strip("_")


def control_env_names(kind: TransportKind) -> list[str]:
    return [f"{ENV_PREFIX}CONTROL_{s}" for s in kind.env_suffixes]


def data_env_names(kind: TransportKind, role: Optional[str]) -> list[str]:
    """Names looked up for a data channel: role-specific first, then the generic one."""
    names = (
        [f"{ENV_PREFIX}DATA_{normalise_role(role)}_{s}" for s in kind.env_suffixes]
        if role and normalise_role(role)
        else []
    )
    return names + [f"{ENV_PREFIX}DATA_{s}" for s in kind.env_suffixes]


def order_options(*lists: Iterable[TransportOption]) -> list[TransportOption]:
    """Priority descending (ties keep their order), first of each kind kept, stdio appended
    as the final fallback when absent."""
    merged: list[TransportOption] = [
        TransportOption(TransportKind(o.kind), o.priority, o.max_frame_bytes) for xs in lists for o in xs
    ]
    ordered = sorted(merged, key=lambda o: -o.priority)  # sorted() is stable
    seen: set[TransportKind] = set()
    out: list[TransportOption] = []
    for o in ordered:
        if o.kind not in seen:
            seen.add(o.kind)
            out.append(o)
    if TransportKind.STDIO not in seen:
        out.append(TransportOption(TransportKind.STDIO, 0))
    return out
