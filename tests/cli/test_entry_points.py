"""The installed console script and ``python -m stellatune`` as real processes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import wasmtime

SCRIPT = Path(sys.executable).with_name("stellatune")


def run(*argv: str, env_home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "STELLATUNE_HOME": str(env_home)}
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)


def test_console_script_install_and_list(tmp_path, plugin_src):
    home = tmp_path / "home"
    installed = run(str(SCRIPT), "plugins", "install", str(plugin_src), env_home=home)
    assert (installed.returncode, installed.stdout) == (0, "dev.test.gain\n"), installed.stderr
    listed = run(str(SCRIPT), "plugins", "list", "--json", env_home=home)
    assert listed.returncode == 0
    assert [p["id"] for p in json.loads(listed.stdout)["plugins"]] == ["dev.test.gain"]
    assert (home / "plugins" / "dev.test.gain" / "plugin.json").is_file()
    missing = run(str(SCRIPT), "plugins", "disable", "dev.test.nope", env_home=home)
    assert missing.returncode == 4 and missing.stderr.startswith("error: ")
    assert "Traceback" not in missing.stderr


def test_python_m_stellatune_prints_diagnostics(tmp_path):
    result = run(sys.executable, "-m", "stellatune", env_home=tmp_path)
    assert result.returncode == 0, result.stderr
    fields = dict(re.match(r"^(.+?)\s{2,}(.*)$", line).groups() for line in result.stdout.splitlines())
    assert fields["stellatune"].strip() == "0.1.0"
    assert fields["wasmtime"].startswith("50.0.1")
    assert str(Path(wasmtime.__file__).parent) in fields["libwasmtime"]
    assert fields["plugins dir"] == str(tmp_path / "plugins")
    assert "engine extension" in fields  # "built" or why not: another build may be running
    assert "portaudio" in fields and "unavailable" not in fields["python"]
