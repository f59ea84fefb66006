# mk/pyhooks.mk -- Python programs audited by Python line: allocator._pyhooks
# (CPython's allocator hooks), `ringpool-audit run --python`, the pytest
# markers, and the cost bench beside tracemalloc and memray.
#   make test-pyhooks    pytest tests/pyhooks (hooks, run --python, exactness
#                        against tracemalloc, pytest markers), mypy --strict
#   make bench-pyhooks   the workload set plain / tracemalloc / memray / run --python
#                        (not part of make test; installs memray from PyPI, pinned)

PYHOOKS_BENCH_ARGS ?=

.PHONY: test-pyhooks bench-pyhooks
TEST_TARGETS += test-pyhooks

test-pyhooks: setup-py
	MYPYPATH=tests/pyhooks:tests/shared $(PY) -m mypy --strict --follow-imports=silent audit/pyrun.py \
	    audit/pyreport.py audit/_pyboot.py audit/pytest_plugin.py tests/pyhooks
	$(PY) -m pytest -q -p no:cacheprovider tests/pyhooks

# memray is pinned in benches/pyhooks/requirements.txt and installed only here.
bench-pyhooks: setup-py setup-sys
	$(PIP) -r benches/pyhooks/requirements.txt
	$(PY) benches/pyhooks/bench.py --callgrind --markdown $(PYHOOKS_BENCH_ARGS)
