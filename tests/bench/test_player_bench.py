"""The Player section of the bench document (bench/stbench/player.py): chain edit and seek
latency, gapless joins. The run's own structure is checked on a real quick run (marked
``bench``); the schema, targets and report on a document built from the committed results."""

import copy

import jsonschema
import pytest

from stbench import render, suite

PLAYER = {
    "frames": 128,
    "edit": {
        "count": 49,
        "p50_ms": 0.0,
        "p99_ms": 5.3,
        "max_ms": 5.3,
        "config_update": {"count": 24, "p50_ms": 0.0, "p99_ms": 2.7, "max_ms": 2.7},
        "chain_swap": {"count": 25, "p50_ms": 2.7, "p99_ms": 5.3, "max_ms": 5.3},
        "first_edit_ms": 34.7,
        "ring_underruns": 0,
    },
    "seek": {"count": 12, "p50_ms": 8.0, "p99_ms": 10.7, "max_ms": 10.7, "ring_underruns": 0},
    "gapless": {"items": 5, "frames": 96695, "length_error_frames": 0, "join_error_samples": 0, "max_abs_error": 0.0},
}


@pytest.fixture
def doc(committed_results):
    d = copy.deepcopy(committed_results)
    d["player"] = copy.deepcopy(PLAYER)
    d["targets"] = suite.targets(d)
    return d


def test_a_document_with_the_player_section_matches_the_schema(doc, schema):
    jsonschema.validate(doc, schema)
    bad = copy.deepcopy(doc)
    del bad["player"]["seek"]["p99_ms"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


def test_the_player_targets_are_judged_from_the_section(doc):
    targets = {t["key"]: t for t in doc["targets"]}
    assert targets["edit_to_output_p99_ms"]["measured"] == PLAYER["edit"]["p99_ms"]
    assert targets["edit_to_output_p99_ms"]["met"] is True
    assert targets["seek_to_audio_p99_ms"]["measured"] == PLAYER["seek"]["p99_ms"]
    assert targets["gapless_join_error_samples"]["met"] is True
    doc["player"]["gapless"]["join_error_samples"] = 2
    doc["player"]["edit"]["p99_ms"] = 10.7
    judged = {t["key"]: t["met"] for t in suite.targets(doc)}
    assert judged["gapless_join_error_samples"] is False and judged["edit_to_output_p99_ms"] is False


def test_the_report_has_the_player_section(doc):
    md = render.markdown(doc)
    assert "## The Player" in md
    assert "| seek → first audio at the new position | 12 | 8.0 | 10.7 | 10.7 |" in md
    assert "Gapless: 5 items (96695 frames)" in md and "0 samples differ" in md


@pytest.mark.bench
def test_the_quick_run_reports_the_player_section(results):
    player = results["player"]
    assert player["frames"] == 128
    edit, seek, gapless = player["edit"], player["seek"], player["gapless"]
    assert edit["count"] >= 40 and edit["config_update"]["count"] + edit["chain_swap"]["count"] == edit["count"]
    for r in (edit, edit["config_update"], edit["chain_swap"], seek):
        assert 0 <= r["p50_ms"] <= r["p99_ms"] <= r["max_ms"]
    assert seek["count"] >= 10
    assert gapless["items"] >= 2 and gapless["frames"] > 0
    keys = {t["key"] for t in results["targets"]}
    assert {"edit_to_output_p99_ms", "seek_to_audio_p99_ms", "gapless_join_error_samples"} <= keys
