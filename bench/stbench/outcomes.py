"""A pytest plugin that writes every test's outcome, by node id, to the JSON file named by
``STBENCH_OUTCOMES`` (``stellatune report`` loads it with ``-p stbench.outcomes``).

A test counts as passed only if its setup, call and teardown all passed; a skip is recorded as
skipped (the report treats a skipped proof as no proof).
"""

from __future__ import annotations

import json
import os
from typing import Any

_outcomes: dict[str, str] = {}
_RANK = {"passed": 0, "skipped": 1, "failed": 2}


def pytest_runtest_logreport(report: Any) -> None:
    outcome = "failed" if report.outcome == "failed" else report.outcome
    if report.when != "call" and outcome == "passed":
        _outcomes.setdefault(report.nodeid, "passed")
        return
    if _RANK[outcome] >= _RANK[_outcomes.get(report.nodeid, "passed")]:
        _outcomes[report.nodeid] = outcome


def pytest_sessionfinish(session: Any, exitstatus: int) -> None:
    path = os.environ.get("STBENCH_OUTCOMES")
    if path:
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"exitstatus": int(exitstatus), "outcomes": _outcomes}, f, indent=1, sort_keys=True)
