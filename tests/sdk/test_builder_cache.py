"""The builder's one cache: content-keyed zips under build_cache_dir(), a hit for unchanged
inputs, a new key (and a real rebuild) when a source, the manifest, the SDK, the WIT package or
the compiler changes, and nothing left behind by a failed build."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from stellatune.errors import PluginBuildError
from stellatune.paths import build_cache_dir
from stellatune.sdk import build, builder, cbuild
from stellatune.sdk.build import build_plugin
from stellatune.sdk.builder import cache_key, read_manifest

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "plugins"


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> Iterator[Path]:
    """The unedited gain example built once into a fresh cache (``$STELLATUNE_CACHE``), which
    the tests of this module share: each edits its own copy of the plugin."""
    root = tmp_path_factory.mktemp("builder-cache")
    src = root / "gain"
    shutil.copytree(EXAMPLES / "gain", src)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STELLATUNE_CACHE", str(root / "cache"))
        yield build_plugin(src)


@pytest.fixture
def gain(tmp_path) -> Path:
    src = tmp_path / "gain"
    shutil.copytree(EXAMPLES / "gain", src)
    return src


def c_key(src: Path) -> str:
    return cache_key(src, cbuild.c_step(src, read_manifest(src)))


def append(path: Path, text: str) -> None:
    with open(path, "a") as f:
        f.write(text)


def test_an_unchanged_rebuild_is_a_cache_hit(baseline, gain, monkeypatch, tmp_path):
    assert baseline.parent == build_cache_dir() and list(baseline.parent.iterdir()) == [baseline]
    mtime = baseline.stat().st_mtime_ns

    def no_compiler(*args):
        raise AssertionError("a cache hit must not compile")

    monkeypatch.setattr(cbuild, "_compile", no_compiler)
    # Another copy of the same plugin elsewhere: the key hashes content, not the location.
    assert build_plugin(gain) == baseline and baseline.stat().st_mtime_ns == mtime
    # The C step staged from the same cache entry: the package, sidecar modes and all.
    out = cbuild.build_c_plugin(gain, tmp_path / "out")
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == [
        "native/gain.so",
        "plugin.json",
        "wasm/gain.component.wasm",
        "wasm/gain.hotpath.wasm",
    ]
    assert (out / "native" / "gain.so").stat().st_mode & 0o111


def test_tool_identity_is_asked_once_per_process(gain):
    c_key(gain)
    hits = builder.tool_identity.cache_info().hits
    c_key(gain)
    assert builder.tool_identity.cache_info().hits == hits + 2  # clang and wasm-tools


def _copy_sdk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    sdk = tmp_path / "sdk"
    shutil.copytree(cbuild.SDK_DIR, sdk, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    monkeypatch.setattr(cbuild, "SDK_DIR", sdk)
    return sdk


def _copy_wit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    wit = tmp_path / "wit"
    shutil.copytree(REPO / "wit" / "stellatune-plugin", wit)
    monkeypatch.setenv("STELLATUNE_WIT_DIR", str(wit))
    return wit


def _edit_source(src: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    append(src / "src" / "gain.c", "\n/* changed */\n")


def _edit_manifest(src: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = json.loads((src / "plugin.json").read_text())
    manifest["name"] += " (edited)"
    (src / "plugin.json").write_text(json.dumps(manifest))


def _edit_sdk_header(src: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    append(_copy_sdk(tmp_path, monkeypatch) / "include" / "stellatune_sdk.h", "\n/* changed */\n")


def _edit_sdk_glue(src: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    append(_copy_sdk(tmp_path, monkeypatch) / "glue" / "hotpath.c", "\n/* changed */\n")


def _edit_wit(src: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    append(_copy_wit(tmp_path, monkeypatch) / "common.wit", "\n// changed\n")


def _swap_compiler(src: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another clang: a wrapper that reports another version and otherwise is clang-14."""
    real = shutil.which("clang-14") or shutil.which("clang")
    wrapper = tmp_path / "bin" / "clang-wrapper"
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\n[ "$1" = --version ] && echo "patched clang 14.0.0-p1"\nexec "{real}" "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("STELLATUNE_CLANG", str(wrapper))


EDITS: dict[str, Callable[[Path, Path, pytest.MonkeyPatch], None]] = {
    "source": _edit_source,
    "manifest": _edit_manifest,
    "sdk-header": _edit_sdk_header,
    "sdk-glue": _edit_sdk_glue,
    "wit": _edit_wit,
    "compiler": _swap_compiler,
}


def test_the_key_hashes_content_not_locations(gain, tmp_path, monkeypatch):
    """A copy of the SDK or the WIT package elsewhere is the same build (so the edits below
    change only what they edit)."""
    before = c_key(gain)
    _copy_sdk(tmp_path, monkeypatch)
    _copy_wit(tmp_path, monkeypatch)
    assert c_key(gain) == before


@pytest.mark.parametrize("edit", EDITS.values(), ids=EDITS.keys())
def test_every_input_is_in_the_key_and_a_change_rebuilds(baseline, gain, tmp_path, monkeypatch, edit):
    key = c_key(gain)
    assert key in baseline.name
    edit(gain, tmp_path, monkeypatch)
    assert c_key(gain) != key
    rebuilt = build_plugin(gain)
    assert rebuilt != baseline and rebuilt.parent == baseline.parent and c_key(gain) in rebuilt.name


def test_python_key_covers_sources_wit_and_componentize_py(tmp_path, monkeypatch):
    """Key only (no componentize-py run): the Python step hashes what it compiles with too."""
    src = tmp_path / "pygain"
    shutil.copytree(EXAMPLES / "pygain", src)

    def key() -> str:
        return cache_key(src, build.python_step(src, read_manifest(src)))

    keys = [key()]
    append(src / "src" / "app.py", "\n# changed\n")
    keys.append(key())
    wit = tmp_path / "wit"
    shutil.copytree(REPO / "wit" / "stellatune-plugin", wit)
    append(wit / "worlds.wit", "\n// changed\n")
    monkeypatch.setenv("STELLATUNE_WIT_DIR", str(wit))
    keys.append(key())
    real_identity = builder.tool_identity
    monkeypatch.setattr(builder, "tool_identity", lambda path: real_identity(path) + " patched")
    keys.append(key())
    assert len(set(keys)) == len(keys)


def test_a_failed_build_leaves_nothing_in_the_cache(gain, tmp_path, monkeypatch):
    monkeypatch.setenv("STELLATUNE_CACHE", str(tmp_path / "cache"))
    (gain / "src" / "gain.c").write_text('#include "stellatune_sdk.h"\nint broken( {\n')
    with pytest.raises(PluginBuildError, match="compiling"):
        build_plugin(gain)
    cache = build_cache_dir()
    assert not cache.exists() or list(cache.iterdir()) == []
