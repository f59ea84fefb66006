# mk/pyhooks-asan.mk -- tests/pyhooks (CPython's allocator hooks, run --python,
# the pytest plugin) on the ASan+UBSan build of mk/pyasan.mk.
#   make test-pyhooks-asan   (in make test-py-asan) pytest tests/pyhooks on
#                            build/py-asan/lib, as test-py-asan runs tests/python
#   PYHOOKS_ASAN_ARGS        extra pytest arguments (-k, -x, ...)
#
# The tests start their interpreters with this process's environment plus
# their own variables (tests/pyhooks/conftest.py's run_python, `ringpool-audit
# run --python`), so PYASAN_ENV reaches every child: the sanitizer runtimes
# preloaded, PYTHONPATH=build/py-asan/lib, and PYTHONSAFEPATH, without which a
# child run with -c or -m from the project root would import the
# uninstrumented allocator/ there.  PYTHONMALLOC=malloc as in test-py-asan:
# the hooks wrap whatever allocator the domains have, and the tests that need
# one set it themselves.

PYHOOKS_ASAN_ARGS ?=

.PHONY: test-pyhooks-asan
test-py-asan: test-pyhooks-asan

test-pyhooks-asan: $(PYASAN_PY)
	$(call pysan_check,$(PYASAN_ENV),$(PYASAN_DIR),test-pyhooks-asan)
	$(PYASAN_ENV) $(PY) -m pytest -q -p no:cacheprovider tests/pyhooks $(PYHOOKS_ASAN_ARGS)
