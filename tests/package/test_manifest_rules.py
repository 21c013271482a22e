"""One broken manifest per rule: each must be reported with its JSON path and rule name."""

from __future__ import annotations

import json
import time

import pytest

from stellatune.errors import ManifestError
from stellatune.manifest import (
    AbilityKind,
    DecoderRules,
    ExtScore,
    load_manifest,
    parse_manifest,
)


def _set(path: str, value):
    """A mutation that sets ``path`` (``a.b[0].c``) in a manifest dict; ``...`` deletes it."""

    def mutate(doc: dict) -> None:
        *parents, last = path.replace("]", "").replace("[", ".").split(".")
        node = doc
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        key = int(last) if isinstance(node, list) else last
        if value is ...:
            del node[key]
        else:
            node[key] = value

    return mutate


DEC = "components[0].abilities[0]"
DSP = "components[1].abilities[0]"

# (rule id for the test name, mutation, expected json path, expected rule)
CASES = [
    ("schema-version", _set("schema_version", 2), "schema_version", "schema-version"),
    ("schema-version-type", _set("schema_version", "1"), "schema_version", "type"),
    ("schema-version-bool", _set("schema_version", True), "schema_version", "type"),
    ("schema-version-missing", _set("schema_version", ...), "schema_version", "required"),
    ("id-blank", _set("id", "   "), "id", "not-blank"),
    ("id-missing", _set("id", ...), "id", "required"),
    ("id-traversal", _set("id", "../x"), "id", "safe-id"),
    ("id-dotdot", _set("id", ".."), "id", "safe-id"),
    ("id-dot", _set("id", "."), "id", "safe-id"),
    ("id-hidden", _set("id", ".staging-1"), "id", "safe-id"),
    ("id-slash", _set("id", "a/b"), "id", "safe-id"),
    ("id-space", _set("id", "a b"), "id", "safe-id"),
    ("name-blank", _set("name", ""), "name", "not-blank"),
    ("version-blank", _set("version", " \t"), "version", "not-blank"),
    ("version-type", _set("version", 1), "version", "type"),
    ("api-version", _set("api_version", 2), "api_version", "api-version"),
    ("api-version-missing", _set("api_version", ...), "api_version", "required"),
    ("api-version-negative", _set("api_version", -1), "api_version", "u32"),
    ("components-empty", _set("components", []), "components", "non-empty"),
    ("components-type", _set("components", {}), "components", "type"),
    ("component-type", _set("components[1]", "dsp"), "components[1]", "type"),
    ("component-id-blank", _set("components[1].id", " "), "components[1].id", "not-blank"),
    ("component-id-unique", _set("components[1].id", "decoder"), "components[1].id", "unique"),
    ("path-blank", _set("components[0].path", ""), "components[0].path", "not-blank"),
    ("path-absolute", _set("components[0].path", "/etc/passwd"), "components[0].path", "safe-path"),
    ("path-parent", _set("components[0].path", "wasm/../../x.wasm"), "components[0].path", "safe-path"),
    ("path-drive", _set("components[0].path", "C:/x.wasm"), "components[0].path", "safe-path"),
    ("path-backslash", _set("components[0].path", "wasm\\x.wasm"), "components[0].path", "safe-path"),
    ("path-nul", _set("components[0].path", "x\x00.wasm"), "components[0].path", "safe-path"),
    ("world-blank", _set("components[0].world", ""), "components[0].world", "not-blank"),
    (
        "world-unknown",
        _set("components[0].world", "stellatune:plugin/video-plugin@0.1.0"),
        "components[0].world",
        "world",
    ),
    ("abilities-empty", _set("components[0].abilities", []), "components[0].abilities", "non-empty"),
    ("abilities-missing", _set("components[0].abilities", ...), "components[0].abilities", "required"),
    ("kind-unknown", _set(f"{DEC}.kind", "video"), f"{DEC}.kind", "kind"),
    ("kind-world", _set(f"{DSP}.kind", "source"), f"{DSP}.kind", "kind-world"),
    ("type-id-blank", _set(f"{DEC}.type_id", "   "), f"{DEC}.type_id", "not-blank"),
    ("type-id-type", _set(f"{DEC}.type_id", 7), f"{DEC}.type_id", "type"),
    ("display-name-blank", _set(f"{DEC}.display_name", " "), f"{DEC}.display_name", "not-blank"),
    ("schema-not-json", _set(f"{DSP}.config_schema_json", "{oops"), f"{DSP}.config_schema_json", "json"),
    ("default-not-json", _set(f"{DSP}.default_config_json", "[1,"), f"{DSP}.default_config_json", "json"),
    ("default-nan", _set(f"{DSP}.default_config_json", "NaN"), f"{DSP}.default_config_json", "json"),
    (
        "default-vs-schema",
        _set(f"{DSP}.default_config_json", '{"gain_db": "loud"}'),
        f"{DSP}.default_config_json",
        "default-config",
    ),
    (
        "schema-invalid",
        _set(f"{DSP}.config_schema_json", '{"type": "whatever"}'),
        f"{DSP}.config_schema_json",
        "config-schema",
    ),
    ("schema-not-object", _set(f"{DSP}.config_schema_json", "[1]"), f"{DSP}.config_schema_json", "config-schema"),
    (
        "schema-remote-ref",
        _set(f"{DSP}.config_schema_json", '{"$ref": "http://127.0.0.1:9/s.json"}'),
        f"{DSP}.config_schema_json",
        "config-schema",
    ),
    (
        "decoder-on-dsp",
        _set(f"{DSP}.decoder", {"ext_scores": [{"ext": "x", "score": 1}]}),
        f"{DSP}.decoder",
        "decoder-kind",
    ),
    ("decoder-missing", _set(f"{DEC}.decoder", ...), f"{DEC}.decoder", "decoder-rules"),
    (
        "decoder-unusable",
        _set(f"{DEC}.decoder", {"ext_scores": [], "wildcard_score": 0}),
        f"{DEC}.decoder",
        "decoder-rules",
    ),
    ("ext-empty", _set(f"{DEC}.decoder.ext_scores[0].ext", " . "), f"{DEC}.decoder.ext_scores[0].ext", "ext"),
    ("ext-star", _set(f"{DEC}.decoder.ext_scores[0].ext", "*"), f"{DEC}.decoder.ext_scores[0].ext", "ext"),
    (
        "ext-unique",
        _set(f"{DEC}.decoder.ext_scores", [{"ext": "mp3", "score": 1}, {"ext": ".MP3 ", "score": 2}]),
        f"{DEC}.decoder.ext_scores[1].ext",
        "unique",
    ),
    ("score-u16", _set(f"{DEC}.decoder.ext_scores[0].score", 65536), f"{DEC}.decoder.ext_scores[0].score", "u16"),
    ("score-type", _set(f"{DEC}.decoder.ext_scores[0].score", "50"), f"{DEC}.decoder.ext_scores[0].score", "type"),
    ("score-float", _set(f"{DEC}.decoder.ext_scores[0].score", 5.0), f"{DEC}.decoder.ext_scores[0].score", "type"),
    ("wildcard-u16", _set(f"{DEC}.decoder.wildcard_score", -1), f"{DEC}.decoder.wildcard_score", "u16"),
    (
        "ability-key-unique",
        lambda d: d["components"][1]["abilities"].append(dict(d["components"][1]["abilities"][0], type_id=" gain ")),
        "components[1].abilities[1].type_id",
        "unique",
    ),
]


@pytest.mark.parametrize("mutate,json_path,rule", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_rule_is_reported_with_its_path(manifest_dict, mutate, json_path, rule):
    mutate(manifest_dict)
    with pytest.raises(ManifestError) as caught:
        parse_manifest(manifest_dict)
    found = [(p.json_path, p.rule) for p in caught.value.problems]
    assert (json_path, rule) in found, found


def test_the_valid_manifest_parses_into_the_model(manifest_dict):
    m = parse_manifest(manifest_dict)
    assert m.id == "dev.test.sample" and m.api_version == 1 and m.schema_version == 1
    pairs = [(c.id, a.kind, a.type_id) for c, a in m.abilities()]
    assert pairs == [("decoder", AbilityKind.DECODER, "sample"), ("dsp", AbilityKind.DSP, "gain")]
    assert m.components[0].abilities[0].decoder == DecoderRules((ExtScore("smp", 50),), 0)
    assert m.components[1].world_name == "dsp-plugin"
    assert m.raw is manifest_dict


def test_every_problem_is_collected_not_just_the_first(manifest_dict):
    manifest_dict["id"] = "../x"
    manifest_dict["api_version"] = 7
    manifest_dict["components"][0]["abilities"][0]["type_id"] = ""
    manifest_dict["components"][1]["path"] = "/abs"
    with pytest.raises(ManifestError) as caught:
        parse_manifest(manifest_dict)
    rules = {(p.json_path, p.rule) for p in caught.value.problems}
    assert rules == {
        ("id", "safe-id"),
        ("api_version", "api-version"),
        (f"{DEC}.type_id", "not-blank"),
        ("components[1].path", "safe-path"),
    }
    assert "api_version 7" in str(caught.value)


def test_normalisation_trims_type_id_and_exts(manifest_dict):
    ability = manifest_dict["components"][0]["abilities"][0]
    ability["type_id"] = "  sample \n"
    ability["decoder"]["ext_scores"] = [{"ext": " .FLAC ", "score": 3}]
    m = parse_manifest(manifest_dict)
    parsed = m.components[0].abilities[0]
    assert parsed.type_id == "sample"
    assert parsed.decoder.ext_scores == (ExtScore("flac", 3),)


def test_wildcard_alone_is_a_usable_decoder_rule(manifest_dict):
    manifest_dict["components"][0]["abilities"][0]["decoder"] = {"wildcard_score": 1}
    rules = parse_manifest(manifest_dict).components[0].abilities[0].decoder
    assert rules == DecoderRules((), 1)


@pytest.mark.parametrize("spelling", ["output_sink", "output-sink"])
def test_output_sink_is_accepted_in_both_spellings(manifest_dict, spelling):
    component = manifest_dict["components"][1]
    component["world"] = "stellatune:plugin/output-sink-plugin@0.1.0"
    component["abilities"][0]["kind"] = spelling
    m = parse_manifest(manifest_dict)
    assert m.components[1].abilities[0].kind is AbilityKind.OUTPUT_SINK
    assert m.to_json()["components"][1]["abilities"][0]["kind"] == "output_sink"


def test_world_names_of_every_kind():
    assert [k.world_name for k in AbilityKind] == [
        "decoder-plugin",
        "source-plugin",
        "lyrics-plugin",
        "output-sink-plugin",
        "dsp-plugin",
    ]


def test_unknown_keys_and_null_optionals_are_tolerated(manifest_dict):
    manifest_dict["homepage"] = "https://example.org"
    manifest_dict["components"][1]["threading"] = {"model": "dedicated"}
    manifest_dict["components"][1]["abilities"][0]["display_name"] = None
    manifest_dict["permissions"] = None
    m = parse_manifest(manifest_dict)
    assert m.components[1].abilities[0].display_name is None
    assert m.permissions.is_empty()


def test_to_json_round_trips(manifest_dict):
    manifest_dict["permissions"] = {"env": ["LANG"], "http": ["127.0.0.1:8080"]}
    m = parse_manifest(manifest_dict)
    again = parse_manifest(json.loads(json.dumps(m.to_json())))
    assert again == m
    assert again.to_json() == m.to_json()


def test_component_files_must_exist_inside_the_root(tmp_path, manifest_dict, pk):
    pk.write_package(tmp_path / "pkg", manifest_dict)
    (tmp_path / "pkg" / pk.DSP_WASM).unlink()
    (tmp_path / "pkg" / "wasm" / "dsp.wasm").mkdir()  # a directory is not a component file
    (tmp_path / "outside.wasm").write_bytes(b"x")
    (tmp_path / "pkg" / "wasm" / "link.wasm").symlink_to(tmp_path / "outside.wasm")
    manifest_dict["components"][0]["path"] = "wasm/link.wasm"
    with pytest.raises(ManifestError) as caught:
        parse_manifest(manifest_dict, root=tmp_path / "pkg")
    found = {(p.json_path, p.rule) for p in caught.value.problems}
    assert found == {("components[0].path", "safe-path"), ("components[1].path", "exists")}


def test_load_manifest_names_the_file(tmp_path, manifest_dict, pk):
    root = pk.write_package(tmp_path / "pkg", manifest_dict)
    assert load_manifest(root / "plugin.json").id == "dev.test.sample"
    manifest_dict["name"] = ""
    (root / "plugin.json").write_text(json.dumps(manifest_dict))
    with pytest.raises(ManifestError) as caught:
        load_manifest(root / "plugin.json")
    assert caught.value.file == root / "plugin.json"
    assert str(root / "plugin.json") in str(caught.value)


@pytest.mark.parametrize(
    "content,rule",
    [(b"{not json", "json"), (b"\xff\xfe\x00", "json"), (b"[" * 100_000, "json"), (None, "read")],
    ids=["syntax", "not-utf8", "too-deep", "missing"],
)
def test_unreadable_files_are_manifest_errors(tmp_path, content, rule):
    path = tmp_path / "plugin.json"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ManifestError) as caught:
        load_manifest(path)
    assert [(p.json_path, p.rule) for p in caught.value.problems] == [("$", rule)]


def test_a_non_object_document_is_one_problem():
    with pytest.raises(ManifestError) as caught:
        parse_manifest([1, 2])
    assert [(p.json_path, p.rule) for p in caught.value.problems] == [("$", "type")]


@pytest.mark.timeout(60)  # before the fix this never returned
@pytest.mark.parametrize("keyword", ["pattern", "patternProperties"])
def test_a_schema_pattern_that_backtracks_forever_is_a_problem_not_a_hang(manifest_dict, keyword):
    slow = "^(a|aa)+$"  # exponential under re on a long run of a's that cannot match
    text = "a" * 64 + "!"
    if keyword == "pattern":
        schema = {"type": "object", "properties": {"name": {"type": "string", "pattern": slow}}}
        default = {"name": text}
    else:
        schema = {"type": "object", "patternProperties": {slow: {"type": "number"}}}
        default = {text: 1}
    _set(f"{DSP}.config_schema_json", json.dumps(schema))(manifest_dict)
    _set(f"{DSP}.default_config_json", json.dumps(default))(manifest_dict)
    started = time.monotonic()
    with pytest.raises(ManifestError) as caught:
        parse_manifest(manifest_dict)
    assert time.monotonic() - started < 10
    [problem] = [p for p in caught.value.problems if p.json_path == f"{DSP}.config_schema_json"]
    assert problem.rule == "config-schema" and "backtracks catastrophically" in problem.message


def test_ordinary_patterns_still_match_and_refuse(manifest_dict):
    schema = {
        "type": "object",
        "properties": {"mode": {"type": "string", "pattern": "^(fast|slow)$"}},
        "patternProperties": {"^x_": {"type": "number"}},
    }
    _set(f"{DSP}.config_schema_json", json.dumps(schema))(manifest_dict)
    _set(f"{DSP}.default_config_json", json.dumps({"mode": "fast", "x_gain": 2}))(manifest_dict)
    parse_manifest(manifest_dict)
    for bad in ({"mode": "medium"}, {"x_gain": "loud"}):
        _set(f"{DSP}.default_config_json", json.dumps(bad))(manifest_dict)
        with pytest.raises(ManifestError) as caught:
            parse_manifest(manifest_dict)
        assert [p.rule for p in caught.value.problems] == ["default-config"]
