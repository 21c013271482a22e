"""Where stellatune keeps things on disk: the plugins directory and the caches.

Every plane asks here, so no plane imports another just to learn a path. Each default can be
moved by an environment variable; nothing is created until it is used.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

__all__ = ["HOME_ENV", "CACHE_ENV", "default_plugins_dir", "default_cache_dir", "build_cache_dir"]

#: Names stellatune's home: plugins live in ``$STELLATUNE_HOME/plugins``.
HOME_ENV = "STELLATUNE_HOME"
#: Names the cache root (compiled components, plugin builds).
CACHE_ENV = "STELLATUNE_CACHE"


def default_plugins_dir() -> Path:
    """``$STELLATUNE_HOME/plugins`` if set, else ``<user data dir>/stellatune/plugins``."""
    home = os.environ.get(HOME_ENV, "").strip()
    if home:
        return Path(home).expanduser() / "plugins"
    return Path(platformdirs.user_data_dir("stellatune")) / "plugins"


def default_cache_dir() -> Path:
    """``$STELLATUNE_CACHE`` if set, else the per-user cache directory of stellatune."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path(platformdirs.user_cache_dir("stellatune"))


def build_cache_dir() -> Path:
    """Where ``stellatune plugins build`` keeps built packages, keyed by their inputs."""
    return default_cache_dir() / "builds"
