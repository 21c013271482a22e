"""Capability descriptors, the plugin signature, capability lookups and decoder ranking (§2.2)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stellatune.manifest import Ability, AbilityKind, Component, DecoderRules, ExtScore, Manifest
from stellatune.runtime import CapabilityDescriptor, DesiredState, RuntimePluginInfo, WasmPluginRuntime
from stellatune.runtime.registry import ActivePlugin, ActiveRegistry, build_capabilities, plugin_signature


def decoder(type_id: str, exts: dict[str, int] | None = None, wildcard: int | None = None) -> dict:
    rules: dict = {"ext_scores": [{"ext": e, "score": s} for e, s in (exts or {}).items()]}
    if wildcard is not None:
        rules["wildcard_score"] = wildcard
    return {"kind": "decoder", "type_id": type_id, "decoder": rules}


def manifest_of(*abilities: Ability, version: str = "1") -> Manifest:
    return Manifest(
        schema_version=1,
        id="dev.test.m",
        name="M",
        version=version,
        api_version=1,
        components=(Component("c", "c.wasm", "stellatune:plugin/decoder-plugin@0.1.0", abilities),),
    )


def test_descriptor_defaults_and_normalisation():
    ability = Ability(
        AbilityKind.DECODER,
        "  dec  ",
        decoder=DecoderRules((ExtScore(".MP3", 10), ExtScore("mp3", 40), ExtScore(" Flac ", 5))),
    )
    (cap,) = build_capabilities(manifest_of(ability))
    assert cap.type_id == "dec" and cap.display_name == "dec"
    assert cap.config_schema_json == "{}" and cap.default_config_json == "{}"
    assert cap.decoder_ext_scores == (ExtScore("mp3", 40), ExtScore("flac", 5))  # dup keeps max
    assert cap.decoder_wildcard_score == 0
    assert (cap.plugin_id, cap.component_id, cap.component_rel_path) == ("dev.test.m", "c", "c.wasm")
    assert cap.world == "stellatune:plugin/decoder-plugin@0.1.0"


def test_descriptor_keeps_given_fields():
    ability = Ability(
        AbilityKind.DECODER,
        "dec",
        display_name="Decoder",
        config_schema_json='{"type":"object"}',
        default_config_json='{"a":1}',
        decoder=DecoderRules((), wildcard_score=7),
    )
    (cap,) = build_capabilities(manifest_of(ability))
    assert (cap.display_name, cap.config_schema_json, cap.default_config_json) == (
        "Decoder",
        '{"type":"object"}',
        '{"a":1}',
    )
    assert cap.decoder_wildcard_score == 7
    assert cap.to_json()["kind"] == "decoder"


def test_signature_is_stable_and_covers_manifest_and_component_bytes():
    ability = Ability(AbilityKind.DECODER, "dec", decoder=DecoderRules((), wildcard_score=1))
    m1 = manifest_of(ability)
    digests = {"c.wasm": "ab" * 32}
    sig = plugin_signature(m1, digests)
    assert sig.startswith("sha256:") and len(sig) == len("sha256:") + 64
    assert plugin_signature(manifest_of(ability), dict(digests)) == sig
    assert plugin_signature(manifest_of(ability, version="2"), digests) != sig
    assert plugin_signature(m1, {"c.wasm": "cd" * 32}) != sig


@pytest.fixture
def decoders_runtime(plugins_dir, install):
    install("dev.test.b", abilities=[decoder("mp3-only", {"mp3": 80})])
    install("dev.test.a", abilities=[decoder("generic", {"mp3": 50}, wildcard=10), decoder("z-any", wildcard=10)])
    install("dev.test.c", abilities=[decoder("fallback", wildcard=5)])
    install("dev.test.d", abilities=[decoder("flac", {"flac": 100, "mp3": 0})])
    install("dev.test.e", abilities=[{"kind": "dsp", "type_id": "gain"}])
    rt = WasmPluginRuntime(plugins_dir)
    rt.sync_plugins()
    return rt


def ids(caps):
    return [(c.plugin_id, c.type_id) for c in caps]


def test_exact_rule_beats_wildcard_and_ties_sort_by_ids(decoders_runtime):
    assert ids(decoders_runtime.decoder_candidates("mp3")) == [
        ("dev.test.b", "mp3-only"),  # 80
        ("dev.test.a", "generic"),  # 50 (exact rule, not its wildcard)
        ("dev.test.a", "z-any"),  # 10 wildcard
        ("dev.test.c", "fallback"),  # 5 wildcard; dev.test.d's explicit mp3:0 drops it
    ]


def test_extension_is_normalised(decoders_runtime):
    assert ids(decoders_runtime.decoder_candidates(" .MP3 ")) == ids(decoders_runtime.decoder_candidates("mp3"))


def test_unknown_or_empty_extension_uses_wildcards(decoders_runtime):
    expected = [("dev.test.a", "generic"), ("dev.test.a", "z-any"), ("dev.test.c", "fallback")]
    assert ids(decoders_runtime.decoder_candidates("ogg")) == expected
    assert ids(decoders_runtime.decoder_candidates(None)) == expected
    assert ids(decoders_runtime.decoder_candidates("")) == expected
    assert ids(decoders_runtime.decoder_candidates("flac"))[0] == ("dev.test.d", "flac")


def test_all_decoders_is_the_local_file_fallback(decoders_runtime):
    assert ids(decoders_runtime.all_decoders()) == [
        ("dev.test.a", "generic"),
        ("dev.test.a", "z-any"),
        ("dev.test.b", "mp3-only"),
        ("dev.test.c", "fallback"),
        ("dev.test.d", "flac"),
    ]


def test_capability_lookup_by_key(decoders_runtime):
    rt = decoders_runtime
    cap = rt.capability_of(" dev.test.e ", "dsp", " gain ")
    assert cap is not None and cap.kind is AbilityKind.DSP and cap.type_id == "gain"
    assert rt.capability_of("dev.test.e", AbilityKind.DSP, "gain") == cap
    assert rt.capability_of("dev.test.e", "decoder", "gain") is None
    assert rt.capability_of("dev.test.e", "output-sink", "gain") is None
    assert rt.capability_of("dev.test.nope", "dsp", "gain") is None
    with pytest.raises(ValueError):
        rt.capability_of("dev.test.e", "equaliser", "gain")
    assert ids(rt.capabilities_of("dev.test.a")) == [("dev.test.a", "generic"), ("dev.test.a", "z-any")]
    assert rt.capabilities_of("dev.test.nope") == ()


def test_disabled_plugin_leaves_the_index(decoders_runtime):
    decoders_runtime.set_desired_state("dev.test.b", DesiredState.DISABLED)
    assert "dev.test.b" not in [c.plugin_id for c in decoders_runtime.decoder_candidates("mp3")]
    assert decoders_runtime.capability_of("dev.test.b", "decoder", "mp3-only") is None


# --- ranking invariants over arbitrary rule sets (pure registry, no disk) ---------------------

EXTS = st.sampled_from(["mp3", "flac", "ogg", "wav"])
DECODER = st.tuples(
    st.sampled_from(["p.a", "p.b", "p.c"]),
    st.sampled_from(["t1", "t2"]),
    st.dictionaries(EXTS, st.integers(0, 5), max_size=3),
    st.integers(0, 5),
)


def registry_of(decoders) -> ActiveRegistry:
    by_plugin: dict[str, dict[str, CapabilityDescriptor]] = {}
    for pid, tid, exts, wildcard in decoders:
        by_plugin.setdefault(pid, {})[tid] = CapabilityDescriptor(
            pid,
            "c",
            "c.wasm",
            "stellatune:plugin/decoder-plugin@0.1.0",
            AbilityKind.DECODER,
            tid,
            tid,
            "{}",
            "{}",
            tuple(ExtScore(e, s) for e, s in exts.items()),
            wildcard,
        )
    reg = ActiveRegistry()
    for pid, caps in by_plugin.items():
        info = RuntimePluginInfo(pid, pid, "1", None, None, 1, None)  # type: ignore[arg-type]
        reg.put(ActivePlugin(info, tuple(caps.values()), "sig"))
    return reg


@given(st.lists(DECODER, max_size=8), st.one_of(st.none(), EXTS, st.just(".FLAC")))
def test_candidates_are_exactly_the_positive_scores_in_rank_order(decoders, ext):
    reg = registry_of(decoders)
    got = reg.decoder_candidates(ext)
    wanted = None if ext is None else ext.lstrip(".").lower()
    expected = []
    for cap in reg.all_decoders():
        rules = {r.ext: r.score for r in cap.decoder_ext_scores}
        score = rules.get(wanted, cap.decoder_wildcard_score)
        if score > 0:
            expected.append((-score, cap.plugin_id, cap.type_id))
    assert [(-c.decoder_score(ext), c.plugin_id, c.type_id) for c in got] == sorted(expected)
