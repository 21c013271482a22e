# cython: language_level=3
"""The real-time engine's compiled core (placeholder until the engine lands)."""

def built() -> bool:
    """True: the extension was compiled and imported."""
    return True
