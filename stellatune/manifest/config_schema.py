"""An ability's ``default_config_json`` must satisfy its ``config_schema_json``.

Checked at install so a plugin never starts with a default its own schema refuses. Kept apart
from the walk because it is the one rule that needs ``jsonschema`` and must stay offline.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Optional, cast

import jsonschema
import referencing
import regex

from .reader import MISSING, Reader, loads_strict, type_name

__all__ = ["check_config"]

#: How long one schema ``pattern`` may take on one string. jsonschema matches with ``re``, where
#: a pattern like ``^(a|aa)+$`` backtracks for ages on a 60-character default; every command that
#: reads the manifest would hang on it. ``regex`` (same syntax) matches under a deadline instead.
PATTERN_TIMEOUT_S = 0.25


def _search(pattern: str, text: str) -> bool:
    """``re.search`` semantics under the deadline; a TimeoutError names the pattern."""
    try:
        return regex.search(pattern, text, timeout=PATTERN_TIMEOUT_S) is not None
    except TimeoutError:
        raise TimeoutError(
            f"pattern {pattern!r} took over {PATTERN_TIMEOUT_S:g} s on one string of default_config_json"
            " (it backtracks catastrophically)"
        ) from None


# jsonschema's two keywords that match strings, on `_search`.
def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[jsonschema.ValidationError]:
    if validator.is_type(instance, "string") and not _search(pattern, instance):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


def _pattern_properties(validator: Any, properties: Any, instance: Any, schema: Any) -> Iterator[Any]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in properties.items():
        for key, value in instance.items():
            if _search(pattern, key):
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


def _parse_json_field(r: Reader, key: str, text: Optional[str]) -> object:
    if text is None:
        return MISSING
    try:
        return loads_strict(text)
    except ValueError as exc:
        r.problems.add(r.at(key), "json", f"is not valid JSON: {exc}")
        return MISSING


def check_config(r: Reader, schema_text: Optional[str], default_text: Optional[str]) -> None:
    """Record a problem when either text is not JSON, the schema is not a usable JSON Schema, or
    the default does not validate against it."""
    schema = _parse_json_field(r, "config_schema_json", schema_text)
    default = _parse_json_field(r, "default_config_json", default_text)
    # `{}` is what the original's templates write for "no schema": nothing to check against.
    if schema is MISSING or schema == {} or schema is True:
        return
    if schema is False:
        r.problems.add(r.at("config_schema_json"), "config-schema", "is `false`: it accepts no config at all")
        return
    if not isinstance(schema, dict):
        r.problems.add(
            r.at("config_schema_json"),
            "config-schema",
            f"a JSON Schema must be an object or a boolean, not {type_name(schema)}",
        )
        return
    try:
        validator_class = jsonschema.validators.validator_for(schema)
        validator_class.check_schema(schema)
    except jsonschema.exceptions.SchemaError as exc:
        r.problems.add(r.at("config_schema_json"), "config-schema", f"not a valid JSON Schema: {exc.message}")
        return
    except RecursionError:
        # check_schema recurses a few frames per level: ~100 levels exhaust the stack.
        r.problems.add(r.at("config_schema_json"), "config-schema", "not a usable JSON Schema: nested too deeply")
        return
    except Exception as exc:  # noqa: BLE001 - a "$schema" that is not a string, a regex repeat too big to compile...
        # jsonschema assumes a sane meta-schema before it checks one; whatever it trips on, to
        # the author it is one problem, never a crash of every command that reads the manifest.
        r.problems.add(
            r.at("config_schema_json"), "config-schema", f"not a usable JSON Schema: {type(exc).__name__}: {exc}"
        )
        return
    if default is MISSING:
        return
    # An empty registry: a `$ref` to a URL must fail here, never reach the network.
    matching = jsonschema.validators.extend(  # type: ignore[no-untyped-call]  # (untyped in the stubs)
        validator_class, {"pattern": _pattern, "patternProperties": _pattern_properties}
    )
    validator = matching(schema, registry=referencing.Registry())
    try:
        error = jsonschema.exceptions.best_match(validator.iter_errors(cast(Any, default)))  # any JSON value
    except TimeoutError as exc:  # from _search
        r.problems.add(r.at("config_schema_json"), "config-schema", str(exc))
        return
    except Exception as exc:  # noqa: BLE001 - unresolvable $ref, bad regex, deep recursion...
        # The validator raises assorted library errors for schemas that pass check_schema but
        # cannot be applied; to the author they are all "this schema does not work".
        r.problems.add(r.at("config_schema_json"), "config-schema", f"cannot be applied: {exc}")
        return
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        r.problems.add(
            r.at("default_config_json"),
            "default-config",
            f"does not match config_schema_json at {where}: {error.message}",
        )
