"""Tools and shared definitions for plugin authors: the hot-path ABI and the build helpers."""
