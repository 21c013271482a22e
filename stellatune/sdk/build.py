"""``stellatune plugins build``: turn a plugin source directory into an installable zip.

A plugin directory holds ``plugin.json`` and ``src/``. C plugins (``src/*.c``) are compiled by
the C step (cbuild.py); Python components (``src/app.py``, or ``src/<component-id>/app.py`` when
a plugin has several) by the Python step here, componentize-py for the component's world. The
builder core (builder.py) caches, stages and zips: the zip holds ``plugin.json``, every artifact
at the path the manifest names, and the package's other files (``bin/`` sidecars, assets), never
``src/``. A repeated build of unchanged inputs returns the cached zip at once.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Optional

from .builder import BuildStep, PluginBuildError, Tool, build_package, read_manifest, run_tool, wit_dir
from .cbuild import c_step, is_c_plugin

__all__ = ["build_plugin", "python_step", "PluginBuildError"]

COMPONENTIZE_PY = Tool(("componentize-py",), hint="install stellatune with the 'sdk' extra")


def build_plugin(src_dir: Path, out: Optional[Path] = None) -> Path:
    """Build the plugin in ``src_dir`` into a zip (at ``out`` if given) and return its path.

    Without ``out`` the path is the build cache's copy. Raises :class:`PluginBuildError`.
    """
    src_dir = Path(src_dir).resolve()
    manifest = read_manifest(src_dir)
    step = c_step(src_dir, manifest) if is_c_plugin(src_dir) else python_step(src_dir, manifest)
    cached = build_package(src_dir, manifest, step)
    if out is None:
        return cached
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(cached, out)
    return out


def python_step(src_dir: Path, manifest: dict) -> BuildStep:
    """The builder step that makes every component of a Python plugin with componentize-py."""
    tool = COMPONENTIZE_PY.find()

    def run(stage: Path, work: Path) -> None:
        for component in manifest["components"]:
            _componentize(tool, src_dir, component, stage)

    return BuildStep("python", (tool,), (), "", run)


def _componentize(tool: str, src_dir: Path, component: dict, stage: Path) -> None:
    app_dir = src_dir / "src" / str(component.get("id", ""))
    if not (app_dir / "app.py").is_file():
        app_dir = src_dir / "src"
    if not (app_dir / "app.py").is_file():
        raise PluginBuildError(f"{src_dir}: no src/app.py for component {component.get('id')!r}")
    out = stage / component["path"]
    out.parent.mkdir(parents=True, exist_ok=True)
    world = component["world"].strip().rsplit("/", 1)[-1].split("@", 1)[0]
    run_tool(
        [tool, "-q", "-d", str(wit_dir()), "-w", world, "componentize", "app", "-p", str(app_dir), "-o", str(out)],
        f"building component {component.get('id')!r}",
    )
