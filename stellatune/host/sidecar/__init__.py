"""Sidecars: helper processes shipped in a plugin package, launched, connected and supervised
by the host (WIT ``sidecar``). Start at :class:`SidecarManager`."""

from .locks import LockGuard
from .registry import SidecarManager, SidecarProcess
from .shm_ring import ShmRing
from .spec import LaunchScope, LaunchSpec, TransportKind, TransportOption
from .supervisor import RestartPolicy, SidecarEvent, SidecarStats, SlotState
from .transports import Channel

__all__ = [
    "Channel",
    "LaunchScope",
    "LaunchSpec",
    "LockGuard",
    "RestartPolicy",
    "ShmRing",
    "SidecarEvent",
    "SidecarManager",
    "SidecarProcess",
    "SidecarStats",
    "SlotState",
    "TransportKind",
    "TransportOption",
]
