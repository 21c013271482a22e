"""Checks of the benchmark harness that run no benchmark: the committed results of the last
full run still match the schema, and the command refuses clearly outside a checkout."""

import jsonschema

from stellatune.cli import main


def test_the_committed_results_match_the_schema(committed_results, schema):
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(committed_results, schema)
    assert committed_results["quick"] is False  # committed from a full run


def test_without_a_checkout_the_command_fails_clearly(monkeypatch, tmp_path, capsys):
    from stellatune.cli import bench

    monkeypatch.setattr(bench, "BENCH_DIR", tmp_path / "bench")
    assert main(["bench", "--json", "--quick"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert "needs a source checkout" in err and str(tmp_path / "bench") in err
