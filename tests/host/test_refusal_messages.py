"""A refusal names only what the plugin asked for, and the grant that is missing.

Every ``PluginError`` a host import raises goes back to the plugin. None may quote a path the
host resolved: a symlink's target, the plugins directory, the host's working directory or its
Python binary. Real files, real symlinks and real sidecar launches under a temporary plugins
directory.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from stellatune.errors import PluginError, PluginErrorCode
from stellatune.host import LaunchSpec, OpenRequest, PluginHostContext, SidecarManager, StreamOpenKind, open_stream
from stellatune.host.errors import from_os_error


class Layout:
    """plugins/<id>/ with data/ granted, symlinks out of it, and sidecars in and out of bin/."""

    def __init__(self, tmp: Path):
        self.plugins = tmp / "plugins"
        self.root = self.plugins / "dev.test.refusals"
        self.secret = tmp / "secret-dir"
        (self.root / "data").mkdir(parents=True)
        (self.root / "bin").mkdir()
        (self.root / "libexec").mkdir()
        self.secret.mkdir()
        (self.secret / "key.txt").write_text("secret")
        (self.root / "data" / "ok.txt").write_text("ok")
        (self.root / "data" / "link").symlink_to(self.secret / "key.txt")
        (self.root / "data" / "dirlink").symlink_to(self.secret)
        # A sidecar symlinked to the host's Python (outside the package)...
        (self.root / "bin" / "escape").symlink_to(sys.executable)
        # ...and one symlinked inside the package to a script that cannot start.
        real = self.root / "libexec" / "real-tool-v2"
        real.write_text("#!/nonexistent-interpreter/run\n")
        real.chmod(0o755)
        (self.root / "bin" / "alias").symlink_to(real)
        (self.root / "bin" / "unlisted").write_text("#!/bin/sh\n")
        (self.root / "bin" / "unlisted").chmod(0o755)
        permissions = type(
            "P", (), {"files": ("data",), "sidecars": ("bin/escape", "bin/alias"), "http": ("granted.example",)}
        )()
        self.ctx = PluginHostContext.from_permissions("dev.test.refusals", self.root, permissions)

    def forbidden(self) -> list[str]:
        """Host strings no refusal may contain (beyond the plugin's own)."""
        paths = {
            str(self.plugins),
            os.path.realpath(self.plugins),
            os.getcwd(),
            sys.executable,
            os.path.realpath(sys.executable),
            str(self.secret),
            os.path.realpath(self.secret),
            "real-tool-v2",
            "nonexistent-interpreter",
        }
        return sorted(paths)


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    return Layout(tmp_path)


def assert_names_only(error: PluginError, plugin_string: str, layout: Layout) -> None:
    message = error.message
    assert plugin_string in message, message
    rest = message.replace(repr(plugin_string), "").replace(plugin_string, "")
    for host_string in layout.forbidden():
        assert host_string not in rest, f"{host_string!r} leaked into {message!r}"


def refusal(fn, *args) -> PluginError:
    with pytest.raises(PluginError) as caught:
        fn(*args)
    return caught.value


def open_file(layout: Layout, target: str) -> None:
    open_stream(layout.ctx, OpenRequest(StreamOpenKind.FILE, target))


@pytest.mark.parametrize(
    "target",
    [
        "data/link",  # a symlink inside the root, to a file outside
        "data/dirlink/key.txt",  # through a symlinked directory
        "../../secret-dir/key.txt",  # '..' out of the root
        "data/../../../secret-dir/key.txt",
        "/etc/passwd",  # absolute, outside every root
        "bin/escape",  # not under a files grant
    ],
)
def test_a_file_outside_the_grants_is_denied_by_the_plugins_own_name(layout, target):
    error = refusal(open_file, layout, target)
    assert error.code is PluginErrorCode.DENIED
    assert "permissions.files" in error.message
    assert_names_only(error, target, layout)


def test_a_missing_file_inside_a_root_is_not_found_without_the_host_path(layout):
    error = refusal(open_file, layout, "data/missing.txt")
    assert error.code is PluginErrorCode.NOT_FOUND
    assert "No such file" in error.message  # the OS's words stay
    assert_names_only(error, "data/missing.txt", layout)


def test_an_absolute_path_through_the_root_names_only_what_was_passed(layout):
    target = str(layout.root / "data" / "link")  # the plugin itself spelled the root out
    error = refusal(open_file, layout, target)
    assert error.code is PluginErrorCode.DENIED
    assert error.message.count(str(layout.root)) == 1  # once, inside the plugin's own string
    assert str(layout.secret) not in error.message


def test_os_errors_keep_their_words_but_not_the_file_names():
    error = from_os_error("open 'track.wav'", FileNotFoundError(2, "No such file or directory", "/srv/host/secret"))
    assert error.message == "open 'track.wav': No such file or directory"
    bare = from_os_error("read 'x'", OSError("/srv/host/secret: broken"))
    assert "/srv/host" not in bare.message


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[SidecarManager]:
    m = SidecarManager(runtime_dir=tmp_path / "run")
    yield m
    m.shutdown()


@pytest.mark.parametrize(
    "executable, code, grant",
    [
        ("/usr/bin/python3", PluginErrorCode.DENIED, "absolute"),
        (sys.executable, PluginErrorCode.DENIED, "absolute"),
        ("../../secret-dir/key.txt", PluginErrorCode.DENIED, "'..'"),
        ("bin/../../x", PluginErrorCode.DENIED, "'..'"),
        ("bin/escape", PluginErrorCode.DENIED, "outside the plugin root"),  # symlink to the host's python
        ("escape", PluginErrorCode.DENIED, "outside the plugin root"),  # found as bin/escape
        ("bin/unlisted", PluginErrorCode.DENIED, "permissions.sidecars"),
        ("bin/nothing", PluginErrorCode.NOT_FOUND, "not found"),
    ],
)
def test_a_sidecar_refusal_names_only_the_plugins_executable(layout, manager, executable, code, grant):
    error = refusal(manager.launch, layout.ctx, LaunchSpec(executable))
    assert error.code is code and grant in error.message, error.message
    rest = error.message.replace(repr(executable), "").replace(executable, "")
    for host_string in layout.forbidden():
        assert host_string not in rest, f"{host_string!r} leaked into {error.message!r}"


def test_a_sidecar_that_cannot_start_is_named_as_the_plugin_named_it(layout, manager):
    # bin/alias is a granted symlink, inside the package, to libexec/real-tool-v2, whose
    # interpreter does not exist: the failure names 'bin/alias', not the link's target.
    error = refusal(manager.launch, layout.ctx, LaunchSpec("bin/alias"))
    assert error.code is PluginErrorCode.IO
    assert_names_only(error, "bin/alias", layout)


def test_an_http_refusal_names_the_url_host_and_the_grant(layout):
    error = refusal(open_stream, layout.ctx, OpenRequest(StreamOpenKind.HTTP, "http://elsewhere.example/a"))
    assert error.code is PluginErrorCode.DENIED
    assert error.message == "http host elsewhere.example:80 is not in permissions.http"
