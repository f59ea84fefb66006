# mk/python.mk -- the Python bindings: the `allocator` package.
#   make test-py    pytest tests/python (both backings, safety, Hypothesis model)
#                   and mypy --strict on allocator/ and on a program using it
#                   (tests/python/test_typing_consumer.py)
#   make bench-py   pytest-benchmark suites of benches/python (not part of make test)

PY_TEST_ARGS ?=
PY_BENCH_ARGS ?=

.PHONY: test-py bench-py
TEST_TARGETS += test-py

test-py: setup-py
	$(PY) -m mypy --strict allocator tests/python/test_typing_consumer.py
	$(PY) -m pytest -q -p no:cacheprovider tests/python $(PY_TEST_ARGS)

bench-py: setup-py
	$(PY) -m pytest -q -p no:cacheprovider benches/python --benchmark-group-by=group \
	    --benchmark-columns=min,median,mean,max,rounds --benchmark-sort=name $(PY_BENCH_ARGS)
