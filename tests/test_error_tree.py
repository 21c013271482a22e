"""The error tree stays one tree: every exception stellatune defines is a StellatuneError and lives
in stellatune.errors (docs/architecture.md), so ``except StellatuneError`` catches whatever the
library raises on purpose and one module shows every error a caller may meet.

Every module of the package is imported (none needs a running audio device to import), then the
whole subclass tree of BaseException is searched, which also finds classes defined inside
functions or other classes, and the compiled engine core.
"""

from __future__ import annotations

import importlib
import pkgutil

import stellatune
import stellatune.errors
from stellatune.errors import StellatuneError


def _import_every_module() -> list[str]:
    names = [info.name for info in pkgutil.walk_packages(stellatune.__path__, "stellatune.")]
    for name in names:
        importlib.import_module(name)
    return names


def _subclasses(cls: type) -> set[type]:
    found: set[type] = set()
    pending = [cls]
    while pending:
        for sub in pending.pop().__subclasses__():
            if sub not in found:
                found.add(sub)
                pending.append(sub)
    return found


def _stellatune_exceptions() -> list[type[BaseException]]:
    _import_every_module()
    return sorted(
        (
            c
            for c in _subclasses(BaseException)
            if c.__module__ == "stellatune" or c.__module__.startswith("stellatune.")
        ),
        key=lambda c: (c.__module__, c.__qualname__),
    )


def test_every_module_was_walked():
    names = _import_every_module()
    # Spot checks that the walk reaches subpackages and the compiled core.
    assert {"stellatune.manifest.parser", "stellatune.host.sidecar.shm_ring", "stellatune.engine._core"} <= set(names)


def test_every_exception_is_a_stellatune_error_defined_in_errors():
    exceptions = _stellatune_exceptions()
    assert StellatuneError in exceptions
    strays = [
        f"{c.__module__}.{c.__qualname__}"
        for c in exceptions
        if not issubclass(c, StellatuneError) or c.__module__ != "stellatune.errors"
    ]
    assert strays == [], "define these in stellatune/errors.py as StellatuneError subclasses"


def test_errors_module_exports_every_exception():
    defined = {c.__name__ for c in _stellatune_exceptions() if c.__module__ == "stellatune.errors"}
    assert defined <= set(stellatune.errors.__all__)
