"""`stellatune plugins grant` / `revoke`: host grants stored beside the desired states."""

from __future__ import annotations

import json

from stellatune.cli import EXIT_INVALID, EXIT_NOT_INSTALLED, EXIT_OK
from stellatune.manifest import Permissions
from stellatune.runtime import STATE_FILE_NAME, WasmPluginRuntime

PID = "dev.test.gain"


def test_grant_and_revoke_round_trip(cli, plugin_src, plugins_dir):
    assert cli("plugins", "install", str(plugin_src)).code == EXIT_OK
    (plugins_dir / PID / "bin").mkdir()
    (plugins_dir / PID / "bin" / "helper").write_bytes(b"#!/bin/sh\n")

    r = cli(
        "plugins",
        "grant",
        PID,
        "--http",
        "127.0.0.1:46321",
        "--http",
        "*.example.org",
        "--tcp",
        "media.local:9000",
        "--files",
        "data",
        "--sidecar",
        "bin/helper",
        "--env",
        "HOME",
    )
    assert r.code == EXIT_OK, r.err
    assert r.out == (
        f"granted {PID}: files data; http 127.0.0.1:46321, *.example.org; tcp media.local:9000; "
        "sidecars bin/helper; env HOME\n"
    )
    assert json.loads((plugins_dir / STATE_FILE_NAME).read_text())["host_grants"][PID]["sidecars"] == ["bin/helper"]

    r = cli("plugins", "grant", PID, "--http", "127.0.0.1:46321")
    assert (r.code, r.out) == (EXIT_OK, f"granted {PID}: nothing\nalready granted: http 127.0.0.1:46321\n")

    r = cli("plugins", "revoke", PID, "--http", "*.example.org", "--tcp", "never.example:1")
    assert r.code == EXIT_OK
    assert r.out == (f"revoked {PID}: http *.example.org\nnot granted (nothing to revoke): tcp never.example:1\n")
    assert WasmPluginRuntime(plugins_dir).host_grants(PID) == Permissions(
        files=("data",), http=("127.0.0.1:46321",), tcp=("media.local:9000",), sidecars=("bin/helper",), env=("HOME",)
    )

    r = cli("plugins", "revoke", PID, "--tcp", "never.example:1")
    assert (r.code, r.out) == (
        EXIT_OK,
        f"revoked {PID}: nothing\nnot granted (nothing to revoke): tcp never.example:1\n",
    )

    # Grants do not outlive the package: a later install under the same id starts from its manifest.
    assert cli("plugins", "uninstall", PID).code == EXIT_OK
    assert WasmPluginRuntime(plugins_dir).all_host_grants() == {}


def test_invalid_grants_exit_2_naming_the_field_and_store_nothing(cli, plugin_src, plugins_dir):
    assert cli("plugins", "install", str(plugin_src)).code == EXIT_OK
    r = cli("plugins", "grant", PID, "--env", "HOME", "--http", "http://127.0.0.1:46321")
    assert r.code == EXIT_INVALID
    assert r.err.startswith(f"error: invalid host grant for {PID}: http: ")
    assert "[endpoint]" in r.err and r.out == ""

    r = cli("plugins", "grant", PID, "--sidecar", "bin/missing")
    assert r.code == EXIT_INVALID and "sidecars: " in r.err and "[exists]" in r.err
    r = cli("plugins", "grant", PID, "--tcp", "127.0.0.1")
    assert r.code == EXIT_INVALID and "tcp: " in r.err and "needs a port" in r.err
    r = cli("plugins", "grant", PID, "--files", "../outside")
    assert r.code == EXIT_INVALID and "files: " in r.err and "[safe-path]" in r.err

    r = cli("plugins", "grant", PID)
    assert r.code == EXIT_INVALID and "give at least one of --http" in r.err
    r = cli("plugins", "revoke", PID)
    assert r.code == EXIT_INVALID
    assert WasmPluginRuntime(plugins_dir).all_host_grants() == {}


def test_a_plugin_that_is_not_installed_exits_4(cli, plugins_dir):
    r = cli("plugins", "grant", "dev.test.nothing", "--http", "example.org")
    assert r.code == EXIT_NOT_INSTALLED and "not installed" in r.err
    assert cli("plugins", "revoke", "dev.test.nothing", "--http", "example.org").code == EXIT_NOT_INSTALLED
    assert not (plugins_dir / STATE_FILE_NAME).exists()
