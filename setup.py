from setuptools import setup

setup(cffi_modules=["allocator/_build.py:ffibuilder", "audit/_bench_build.py:ffibuilder"])
