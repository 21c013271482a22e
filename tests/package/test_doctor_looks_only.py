"""``stellatune doctor`` only looks: what discovery would tidy (a pending delete, a dead install's
staging directory) is reported and left as it is."""

from __future__ import annotations

import json
import os
import time

from stellatune.cli import main
from stellatune.package import install_from_artifact, list_installed, store, uninstall_by_id


def test_doctor_only_looks_it_neither_retries_deletes_nor_clears_staging(tmp_path, capsys, pk):
    plugins = tmp_path / "plugins"
    install_from_artifact(plugins, pk.write_package(tmp_path / "pkg", pk.valid_manifest_dict("dev.test.gone")))

    def cannot_delete(root):
        raise OSError("file busy")

    uninstall_by_id(plugins, "dev.test.gone", remove=cannot_delete)  # leaves a pending delete
    marker = (plugins / "dev.test.gone" / ".uninstall-pending").read_bytes()
    stale = plugins / ".staging-left-by-a-killed-install"
    stale.mkdir()
    old = time.time() - store.STALE_STAGING_S - 60
    os.utime(stale, (old, old))

    main(["doctor", "--json", "--plugins-dir", str(plugins)])
    doc = json.loads(capsys.readouterr().out)
    [pending] = [c for c in doc["checks"] if c["name"] == "pending uninstalls"]
    assert pending["status"] == "warn" and "dev.test.gone" in pending["detail"]
    # Nothing on disk moved: the marker (and its retry count) is as it was, the staging is there.
    assert (plugins / "dev.test.gone" / ".uninstall-pending").read_bytes() == marker
    assert stale.is_dir()
    # A listing tidies, as it always did.
    assert list_installed(plugins) == []
    assert not (plugins / "dev.test.gone").exists() and not stale.exists()
