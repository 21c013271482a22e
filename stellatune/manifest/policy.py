"""The manifest's rules as small predicates, shared with the planes that enforce them later.

Each rule has one definition: the parser reports a broken one as a ``ManifestProblem``, while the
package plane (archive entries, receipts) and the host (network grants) call the same functions
at run time, so what a manifest may declare and what a plugin may do never drift apart. Helpers
that report a problem return a :class:`Breach` (rule name + message) or ``None``; the parser adds
the JSON path. No imports from the rest of the package, so any module here may use these.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import NamedTuple, Optional, Union

__all__ = [
    "Breach",
    "world_name_of",
    "unsafe_relative_path_reason",
    "match_endpoint",
    "parse_endpoint",
    "plugin_id_breach",
    "file_path_breach",
    "permission_entry_breach",
]

_SAFE_ID = re.compile(r"[A-Za-z0-9._-]+")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HOST_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_DRIVE_PREFIX = re.compile(r"[A-Za-z]:")


class Breach(NamedTuple):
    """One broken rule, before the parser knows where in the document it is."""

    rule: str
    message: str


def world_name_of(world: str) -> str:
    """``stellatune:plugin/decoder-plugin@0.1.0`` → ``decoder-plugin`` (how the original matches)."""
    return world.rsplit("/", 1)[-1].split("@", 1)[0].strip()


def unsafe_relative_path_reason(path: str) -> Optional[str]:
    """Why ``path`` cannot name something inside a plugin root, or ``None`` when it can.

    Checked lexically and the same on every OS, so a package that is safe here is safe on Windows:
    no absolute path, drive prefix, backslash, ``..`` segment or NUL byte.
    """
    if "\x00" in path:
        return "contains a NUL byte"
    if "\\" in path:
        return "contains a backslash (use forward slashes)"
    if path.startswith("/"):
        return "is absolute"
    if _DRIVE_PREFIX.match(path):
        return "starts with a drive prefix"
    if any(part == ".." for part in path.split("/")):
        return "contains a '..' segment"
    return None


def match_endpoint(pattern: str, host: str, port: int, default_port: int) -> bool:
    """Does an ``http``/``tcp`` permission entry allow connecting to ``host:port``?

    Hosts compare case-insensitively; ``*.example.org`` matches any name below ``example.org``
    (not ``example.org`` itself); an entry without a port stands for ``default_port`` (the URL
    scheme's: 80 for http, 443 for https). ``pattern`` is assumed valid (it came from a validated
    manifest); an invalid one matches nothing.
    """
    parsed = parse_endpoint(pattern)
    if isinstance(parsed, str):
        return False
    want_host, want_port = parsed
    if port != (default_port if want_port is None else want_port):
        return False
    host = host.strip().lower().strip("[]").rstrip(".")
    if want_host.startswith("*."):
        suffix = want_host[1:]  # ".example.org"
        return host.endswith(suffix) and len(host) > len(suffix)
    return host == want_host


def parse_endpoint(text: str) -> Union[tuple[str, Optional[int]], str]:
    """Split ``host[:port]`` into a lower-case host and a port; a string result is the problem."""
    if "://" in text or "/" in text:
        return "must be host[:port], without a scheme or path"
    if text.startswith("["):  # [v6]:port
        end = text.find("]")
        if end < 0:
            return "has an unclosed '['"
        host, rest = text[1:end], text[end + 1 :]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return f"'{host}' is not an IPv6 address"
        if rest and not rest.startswith(":"):
            return "has text after ']' that is not ':port'"
        port_text: Optional[str] = rest[1:] if rest else None
    else:
        if text.count(":") > 1:
            return "IPv6 addresses must be written in brackets, e.g. [::1]:8080"
        host, sep, port_text_raw = text.partition(":")
        port_text = port_text_raw if sep else None
        problem = _host_problem(host)
        if problem:
            return problem
    port: Optional[int] = None
    if port_text is not None:
        if not (port_text.isascii() and port_text.isdigit()):
            return f"port '{port_text}' is not a number"
        port = int(port_text)
        if not 1 <= port <= 65535:
            return f"port {port} is outside 1-65535"
    return host.lower(), port


def _host_problem(host: str) -> Optional[str]:
    if not host:
        return "has an empty host"
    labels = host.split(".")
    if all(label.isascii() and label.isdigit() for label in labels):
        # All digits: an IPv4 address or nothing (no top-level domain is numeric).
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return "is all digits but not a valid IPv4 address"
        return None
    if labels[0] == "*":
        labels = labels[1:]
        if not labels:
            return "a wildcard needs a domain after '*.'"
    for label in labels:
        if label == "*" or "*" in label:
            return "'*' is allowed only as the whole leading label ('*.example.org')"
        if not (label.isascii() and _HOST_LABEL.fullmatch(label)):
            return f"host label '{label}' is not a valid DNS label"
    return None


#: The longest plugin id: a directory name, with room for the install's temporary suffixes.
MAX_PLUGIN_ID_CHARS = 200


def plugin_id_breach(plugin_id: str) -> Optional[Breach]:
    """A plugin id becomes a directory name under the plugins dir, so it must be a safe one.

    A leading dot is refused too: dot-names in the plugins directory belong to the host
    (staging, replaced installs) and discovery never looks at them.
    """
    if len(plugin_id) > MAX_PLUGIN_ID_CHARS:
        # Install paths add ".staging-XXXXXXXX"/".replaced-..." to it: 255 bytes is every
        # common filesystem's limit for one name.
        return Breach("safe-id", f"is {len(plugin_id)} characters long: at most {MAX_PLUGIN_ID_CHARS}")
    if _SAFE_ID.fullmatch(plugin_id) and not plugin_id.startswith("."):
        return None
    return Breach(
        "safe-id",
        f"'{plugin_id}' is not a safe directory name: use letters, digits, '.', '_', '-' and do not start with '.'",
    )


def file_path_breach(rel_path: str, root: Optional[Path], *, what: str) -> Optional[Breach]:
    """Does ``rel_path`` name a regular file inside ``root`` (symlinks resolved)?

    Without a root only the lexical check applies (a manifest parsed from a dict). ``what`` names
    the file in the message (``component``, ``sidecar``).
    """
    reason = unsafe_relative_path_reason(rel_path)
    if reason:
        return Breach("safe-path", f"{what} path '{rel_path}' {reason}")
    if root is None:
        return None
    try:
        real_root = os.path.realpath(root)
        target = os.path.realpath(os.path.join(real_root, rel_path))
        inside = os.path.commonpath([real_root, target]) == real_root
        is_file = inside and os.path.isfile(target)
    except (OSError, ValueError):
        inside = is_file = False
    if not inside:
        return Breach("safe-path", f"{what} path '{rel_path}' resolves outside the plugin root")
    if not is_file:
        return Breach("exists", f"{what} file '{rel_path}' not found in {root}")
    return None


def permission_entry_breach(key: str, entry: str, root: Optional[Path]) -> Optional[Breach]:
    """Is ``entry`` (trimmed, not blank) a valid item of the ``permissions.<key>`` list?"""
    if key == "files":
        reason = unsafe_relative_path_reason(entry)
        return Breach("safe-path", f"file root '{entry}' {reason}") if reason else None
    if key == "sidecars":
        return file_path_breach(entry, root, what="sidecar")
    if key == "env":
        if not _ENV_NAME.fullmatch(entry):
            return Breach("env-name", f"'{entry}' is not an environment variable name")
        return None
    parsed = parse_endpoint(entry)
    if isinstance(parsed, str):
        return Breach("endpoint", f"'{entry}' {parsed}")
    if key == "tcp" and parsed[1] is None:
        return Breach("endpoint", f"'{entry}' needs a port: tcp entries are host:port")
    return None
