"""The benchmark harness behind ``bench/report.py`` and ``stellatune bench``.

It lives beside the benchmarks rather than in the installed package because it needs the
repository: it builds the example kernels from ``examples/plugins/*/src`` and a fixture from
``bench/fixtures``. Entry point: :func:`stbench.suite.run`.
"""
