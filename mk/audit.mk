# mk/audit.mk -- the audit CLI: its tests, `make demo`, and its benches.
#   make test-audit   pytest tests/audit (CLI, formats, exit codes, plugin, demo),
#                     mypy --strict on audit/, and a one-round smoke of the benches
#   make demo         the bundled showcase (`python -m audit demo`)
#   make bench-audit  the pytest-benchmark suite and the CLI bench table
#   make bench-audit-callgrind   instructions per block of fill and release, per strategy
# The peers (talloc, APR, mimalloc) are measured when installed: `make bench-peers`.

AUDIT_BENCH_ARGS ?= --blocks 1e3,1e4,1e5,1e6 --repeat 5
AUDIT_CALLGRIND_BLOCKS ?= 100000

.PHONY: test-audit bench-audit bench-audit-callgrind
TEST_TARGETS += test-audit

test-audit: setup-sys setup-py lib preload
	MYPYPATH=tests/audit:tests/shared $(PY) -m mypy --strict --follow-imports=silent audit tests/audit benches/test_bench_bulk.py
	RINGPOOL_LIB_A=$(abspath $(LIB_A)) $(PY) -m pytest -q -p no:cacheprovider tests/audit
	$(PY) -m pytest -q -p no:cacheprovider benches/test_bench_bulk.py --benchmark-disable

# The C example, when present, runs first under `ringpool-audit run`, then the
# sampling demo; the audit demo comes last, so the run ends with the path of
# its HTML flame graph.
AUDIT_DEMO_HELLO := $(BUILD)/demo/hello
$(AUDIT_DEMO_HELLO): examples/hello.c csrc/include/ringpool.h $(LIB_A)
	@mkdir -p $(@D)
	$(CC) $(WARN) -O2 -Icsrc/include $< $(LIB_A) -lpthread -o $@

demo: setup-run $(if $(wildcard examples/hello.c),$(AUDIT_DEMO_HELLO))
	@if [ -x $(AUDIT_DEMO_HELLO) ]; then \
	  echo "== 0. examples/hello.c, run under: ringpool-audit run -- $(AUDIT_DEMO_HELLO)"; echo; \
	  $(PY) -m audit run -- $(AUDIT_DEMO_HELLO); fi
	@$(MAKE) --no-print-directory demo-sampling
	$(PY) -m audit demo --html $(BUILD)/demo/leaks.html

bench-audit: setup-py
	$(PY) -m pytest -q -p no:cacheprovider benches/test_bench_bulk.py --benchmark-group-by=group \
	    --benchmark-columns=min,median,max,rounds
	$(PY) -m audit bench $(AUDIT_BENCH_ARGS) --plot $(BUILD)/bench-bulk.png --force

bench: bench-audit

bench-audit-callgrind: setup-sys
	BUILD=$(BUILD) CC=$(CC) benches/audit/callgrind_bulk.sh $(AUDIT_CALLGRIND_BLOCKS)
