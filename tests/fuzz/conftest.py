"""Fuzzing helpers: run a hypothesis property a scaled number of times and record what ran.

Every fuzz test here is marked ``fuzz`` and runs in the default suite in its short form
(``evidence.scale``: 50 examples by default, 2000 under ``--full``). ``fuzz_run`` wraps the
property, counts the calls, and writes ``fuzz_<name>.json`` through the shared ``evidence``
fixture (tests/conftest.py) whether the property held or not, so the report sees a failure too.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


class FuzzRun:
    """``fuzz.run(name, strategy, check, short=50, full=2000)``: run ``check(value)`` over
    ``strategy``; ``check`` may return a short outcome label, counted in the evidence."""

    def __init__(self, evidence: Any):
        self.evidence = evidence

    def run(
        self,
        name: str,
        strategy: st.SearchStrategy[Any],
        check: Callable[[Any], object],
        *,
        short: int = 50,
        full: int = 2000,
        **extra: object,
    ) -> collections.Counter[str]:
        examples = self.evidence.scale(short, full)
        outcomes: collections.Counter[str] = collections.Counter()
        calls = 0

        @settings(
            max_examples=examples,
            deadline=None,
            database=None,  # each run explores afresh; a failure prints its reproducer
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
        )
        @given(strategy)
        def prop(value: Any) -> None:
            nonlocal calls
            calls += 1
            label = check(value)
            outcomes[str(label) if label is not None else "ok"] += 1

        began = time.monotonic()
        failure = None
        try:
            prop()
        except BaseException as e:
            failure = f"{type(e).__name__}: {str(e)[:500]}"
            raise
        finally:
            self.evidence.record(
                f"fuzz_{name}",
                examples=examples,
                calls=calls,
                failures=0 if failure is None else 1,
                failure=failure,
                seconds=round(time.monotonic() - began, 2),
                outcomes=dict(outcomes),
                **extra,
            )
        return outcomes


@pytest.fixture
def fuzz(evidence: Any) -> FuzzRun:
    return FuzzRun(evidence)
