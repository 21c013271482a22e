"""End to end through the runtime: install → sync → calls → disable → enable → reload → uninstall,
with the lifecycle hooks the plugin really ran, in order, with the real reasons."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from stellatune import package
from stellatune.errors import RuntimeStateError
from stellatune.executor import AudioSpec
from stellatune.runtime import DesiredState
from stellatune.sdk.build import build_plugin

PYGAIN = "dev.stellatune.example.pygain"

# These build Python components (cached after the first run).
pytestmark = pytest.mark.slow


def test_hooks_follow_enable_disable_reload_and_uninstall(runtime, executor, install, hooks, plugins_dir, tmp_path):
    install("pygain")
    assert hooks(PYGAIN) == []  # activation compiles and checks; it runs no guest code

    proc = executor.dsp(PYGAIN, "pygain").create(AudioSpec(48000, 2))
    assert np.allclose(proc.process(np.full((8, 2), 0.25, np.float32)), 0.25)
    assert hooks(PYGAIN) == ["on-enable"]

    runtime.set_desired_state(PYGAIN, DesiredState.DISABLED)
    assert hooks(PYGAIN) == ["on-enable", "on-disable host-disable"]
    assert executor.live_instances(PYGAIN) == 0 and not executor.is_active(PYGAIN)
    with pytest.raises(RuntimeStateError):
        proc.process(np.zeros((4, 2), np.float32))

    runtime.set_desired_state(PYGAIN, DesiredState.ENABLED)
    runtime.sync_plugins()
    executor.dsp(PYGAIN, "pygain").create(AudioSpec(48000, 1))

    # New code under the same id: the sync reloads, and the new instance runs the new code.
    src = tmp_path / "pygain-v2"
    shutil.copytree(package_source("pygain"), src)
    app = src / "src" / "app.py"
    app.write_text(app.read_text().replace('print(f"pygain: {text}"', 'print(f"pygain: v2 {text}"'))
    manifest = json.loads((src / "plugin.json").read_text())
    manifest["version"] = "0.2.0"
    (src / "plugin.json").write_text(json.dumps(manifest))
    package.install_from_artifact(plugins_dir, build_plugin(src))
    report = runtime.sync_plugins()
    assert [(t.trigger.value, t.outcome.value) for t in report.transitions] == [("reload_changed", "applied")]
    executor.dsp(PYGAIN, "pygain").create(AudioSpec(48000, 2))

    package.uninstall_by_id(plugins_dir, PYGAIN)
    runtime.sync_plugins()
    assert hooks(PYGAIN) == [
        "on-enable",
        "on-disable host-disable",  # disabled by the user
        "on-enable",
        "on-disable reload",  # the old code, torn down for the reload
        "v2 on-enable",
        "v2 on-disable unload",  # the new code, until it was removed from disk
    ]
    assert not executor.is_active(PYGAIN)


def test_shutdown_disables_every_instance_with_shutdown(runtime, executor, install, hooks):
    install("pygain")
    dsp = executor.dsp(PYGAIN, "pygain")
    processors = [dsp.create(AudioSpec(48000, 2)) for _ in range(3)]
    assert executor.live_instances(PYGAIN) == 3
    processors[0].close()  # a closed processor's instance goes at once, as a host-disable
    assert executor.live_instances(PYGAIN) == 2
    runtime.shutdown()
    assert executor.live_instances(PYGAIN) == 0
    assert hooks(PYGAIN) == ["on-enable"] * 3 + ["on-disable host-disable"] + ["on-disable shutdown"] * 2


def package_source(name):
    from pathlib import Path

    return Path(__file__).resolve().parents[2] / "examples" / "plugins" / name
