"""The one C extension module; setuptools builds it (wheels: one per platform and Python)."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("sparsecheck_fused", ["src/sparsecheck_fused.c"], extra_compile_args=["-O3", "-fno-strict-aliasing"])])
