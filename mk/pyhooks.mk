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
	MYPYPATH=tests/pyhooks $(PY) -m mypy --strict --follow-imports=silent audit/pyrun.py \
	    audit/pyreport.py audit/_pyboot.py audit/pytest_plugin.py tests/pyhooks
	$(PY) -m pytest -q -p no:cacheprovider tests/pyhooks

# memray is pinned in benches/pyhooks/requirements.txt and installed only here.
bench-pyhooks: setup-py setup-sys
	$(PIP) -r benches/pyhooks/requirements.txt
	$(PY) benches/pyhooks/bench.py --callgrind --markdown $(PYHOOKS_BENCH_ARGS)

# ---- examples/embed: CPython started and stopped N times in one C host.
#   make embed-residue        heap residue per cycle, PYTHONMALLOC=malloc (every Python
#                             object on the C heap) and with pymalloc, N = EMBED_CYCLES
#   make embed-residue-sites  the same host under the interposer at two N: the growth per
#                             cycle by native call site (ringpool-audit diff of the reports)
# Built against the system's CPython (python3-dev: python3-config --embed).
PYTHON_CONFIG ?= /usr/bin/python3-config
EMBED_HOST    := $(BUILD)/embed/host
EMBED_CYCLES  ?= 1000
EMBED_SITE_CYCLES ?= 20 60

.PHONY: test-embed embed-residue embed-residue-sites setup-embed
TEST_TARGETS += test-embed

setup-embed: $(STAMPS)/embed-sys
$(STAMPS)/embed-sys:
	$(call apt_install,python3-dev)
	@mkdir -p $(@D) && touch $@

$(EMBED_HOST): examples/embed/host.c | setup-embed
	@mkdir -p $(@D)
	$(CC) $(WARN) -O2 -g $$($(PYTHON_CONFIG) --includes) $< -o $@ $$($(PYTHON_CONFIG) --ldflags --embed)

test-embed: $(EMBED_HOST)
	@out=$$($(EMBED_HOST) examples/embed/cycle.py 3 1 2>/dev/null) && echo "$$out" && \
	  [ "$$(echo "$$out" | grep -cE '^ +[0-9]+ +[0-9]+ +[0-9.]+$$')" = 3 ] || \
	  { echo "test-embed: three cycles expected"; exit 1; }
	@if $(EMBED_HOST) examples/embed/cycle.py 0 2>/dev/null; then echo "host accepted 0 cycles"; exit 1; fi
	@if $(EMBED_HOST) examples/embed/missing.py 1 2>/dev/null; then echo "host ran a missing script"; exit 1; fi
	@echo "test-embed: passed"

embed-residue: $(EMBED_HOST)
	@echo "== PYTHONMALLOC=malloc (every object on the C heap)"
	PYTHONMALLOC=malloc $(EMBED_HOST) examples/embed/cycle.py $(EMBED_CYCLES) 2>/dev/null
	@echo "== pymalloc (objects of 512 bytes or less in mmap'd arenas, not counted)"
	$(EMBED_HOST) examples/embed/cycle.py $(EMBED_CYCLES) 2>/dev/null

embed-residue-sites: $(EMBED_HOST) preload setup-py
	rm -rf $(BUILD)/embed/sites && mkdir -p $(BUILD)/embed/sites
	for n in $(EMBED_SITE_CYCLES); do \
	  PYTHONMALLOC=malloc $(PY) -m audit run --preload --report-dir $(BUILD)/embed/sites/n$$n \
	    --output $(BUILD)/embed/sites/n$$n.txt --force -- $(EMBED_HOST) examples/embed/cycle.py $$n || exit 1; done
	set -- $(EMBED_SITE_CYCLES); $(PY) -m audit diff --by module --top 15 \
	  $(BUILD)/embed/sites/n$$1/ringpool-preload.*.json $(BUILD)/embed/sites/n$$2/ringpool-preload.*.json
