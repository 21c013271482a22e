"""Build script for the compiled part of stellatune: the real-time engine extension.

Everything else is plain Python and lives in pyproject.toml.
"""
import glob

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

engine = Extension(
    "stellatune.engine._core",
    sources=[
        "stellatune/engine/_core.pyx",
        "csrc/st_wasmtime.c",
        "csrc/st_chain.c",
        "csrc/st_audio.c",
    ],
    # The headers hold the ring and the chain's structs: a change there must rebuild everything.
    depends=sorted(glob.glob("csrc/*.h")) + sorted(glob.glob("stellatune/engine/*.pxd")),
    include_dirs=["csrc", "stellatune/sdk/include", numpy.get_include()],
    # libwasmtime is *not* linked: we call the copy wasmtime-py already loaded (csrc/st_wasmtime.h).
    libraries=["portaudio", "dl", "pthread", "m"],
    extra_compile_args=["-O2", "-std=gnu11", "-Wno-unused-function"],
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
)

setup(ext_modules=cythonize([engine], language_level=3, compiler_directives={"boundscheck": False, "wraparound": False}))
