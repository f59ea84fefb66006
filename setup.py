from setuptools import setup

setup(cffi_modules=["allocator/_build.py:ffibuilder"])
