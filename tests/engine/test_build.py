"""The compiled engine extension builds and imports."""
from stellatune.engine import _core


def test_engine_extension_imports():
    assert _core.built() is True
