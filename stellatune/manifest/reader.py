"""Strictly typed reads of untrusted JSON that record problems instead of raising.

The parser must report *every* broken rule in one pass, so a missing key or a wrong type becomes a
``ManifestProblem`` and the read returns ``None``; the walk goes on with the next key. Types are
JSON's, not Python's: ``true`` is not an integer, ``"1"`` is not a number.
"""

from __future__ import annotations

import json
from typing import Any, Optional

from ..errors import ManifestProblem

__all__ = ["U16_MAX", "U32_MAX", "MISSING", "Problems", "Reader", "type_name", "join", "loads_strict"]

U16_MAX = 0xFFFF
U32_MAX = 0xFFFF_FFFF

#: What a read returns internally for "absent or broken" (``None`` is a JSON value).
MISSING = object()


class Problems:
    """Collects broken rules while the parser keeps going."""

    def __init__(self) -> None:
        self.items: list[ManifestProblem] = []

    def add(self, path: str, rule: str, message: str) -> None:
        self.items.append(ManifestProblem(path, rule, message))


def type_name(value: object) -> str:
    """The JSON name of a value's type, as messages spell it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def join(path: str, key: str) -> str:
    """The JSON path of ``key`` inside the object at ``path`` (``$`` is the document)."""
    return key if path == "$" else f"{path}.{key}"


class Reader:
    """Typed access to the keys of one JSON object, reporting type errors as problems."""

    def __init__(self, obj: dict[str, Any], path: str, problems: Problems):
        self.obj = obj
        self.path = path
        self.problems = problems

    def at(self, key: str) -> str:
        return join(self.path, key)

    def _get(self, key: str, required: bool) -> object:
        value = self.obj.get(key, MISSING)
        if value is MISSING or (value is None and not required):
            if required:
                self.problems.add(self.at(key), "required", f"'{key}' is required")
            return MISSING
        return value

    def string(self, key: str, *, required: bool = True, blank_ok: bool = False) -> Optional[str]:
        """A string, trimmed; ``None`` when absent or broken (the problem is recorded)."""
        value = self._get(key, required)
        if value is MISSING:
            return None
        if not isinstance(value, str):
            self.problems.add(self.at(key), "type", f"must be a string, not {type_name(value)}")
            return None
        if not blank_ok and not value.strip():
            self.problems.add(self.at(key), "not-blank", f"'{key}' must not be blank")
            return None
        return value

    def integer(self, key: str, maximum: int, *, required: bool = True) -> Optional[int]:
        value = self._get(key, required)
        if value is MISSING:
            return None
        # bool is an int subclass in Python but not a number in JSON.
        if not isinstance(value, int) or isinstance(value, bool):
            self.problems.add(self.at(key), "type", f"must be an integer, not {type_name(value)}")
            return None
        if not 0 <= value <= maximum:
            rule = "u16" if maximum == U16_MAX else "u32"
            self.problems.add(self.at(key), rule, f"{value} is outside 0-{maximum}")
            return None
        return value

    def array(self, key: str, *, required: bool = True) -> Optional[list[Any]]:
        value = self._get(key, required)
        if value is MISSING:
            return None
        if not isinstance(value, list):
            self.problems.add(self.at(key), "type", f"must be an array, not {type_name(value)}")
            return None
        return value

    def object(self, key: str, *, required: bool = True) -> Optional[dict[str, Any]]:
        value = self._get(key, required)
        if value is MISSING:
            return None
        if not isinstance(value, dict):
            self.problems.add(self.at(key), "type", f"must be an object, not {type_name(value)}")
            return None
        return value


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """An object whose keys are unique: with a repeated key, which value counts would depend
    on the reader (Python's json keeps the last, others the first)."""
    doc = dict(pairs)
    if len(doc) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate key {key!r}")
            seen.add(key)
    return doc


def loads_strict(text: str) -> object:
    """``json.loads`` that refuses NaN/Infinity and turns nesting too deep into a ValueError."""
    try:
        return json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_unique_keys)
    except RecursionError:
        raise ValueError("nested too deeply") from None
