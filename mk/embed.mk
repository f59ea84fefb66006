# mk/embed.mk -- examples/embed: CPython started and stopped N times in one C host.
#   make test-embed           (in make test) tests/embed: a few cycles plain, under the interposer,
#                             through run --cycles, with CPython's domains in a pool
#   make embed-residue        heap residue per cycle, PYTHONMALLOC=malloc (every Python
#                             object on the C heap) and with pymalloc, N = EMBED_CYCLES
#   make embed-residue-sites  ringpool-audit run --preload --cycles EMBED_SITE_CYCLES: the
#                             residue per cycle by EMBED_BY (function, module, ...), under the
#                             interposer (EMBED_STACK_DEPTH frames), from one run per count
#   make embed-residue-pool   the same through the pool of the RAW domain, by module (--tag module)
# (libmpdec, inside libpython, warns "mpd_setminalloc: ignoring request..." on stderr
# from the second cycle on: _decimal's initialization runs again in the same process.)
# Built against the system's CPython (python3-dev: python3-config --embed) and libringpool.so.
PYTHON_CONFIG ?= /usr/bin/python3-config
EMBED_HOST    := $(BUILD)/embed/host
EMBED_CYCLES  ?= 1000
EMBED_SITE_CYCLES ?= 1,100,1000
EMBED_BY      ?= function
EMBED_TOP     ?= 12
EMBED_STACK_DEPTH ?= 64

.PHONY: test-embed embed-residue embed-residue-sites embed-residue-pool setup-embed
TEST_TARGETS += test-embed

setup-embed: $(STAMPS)/embed-sys
$(STAMPS)/embed-sys:
	$(call apt_install,python3-dev)
	@mkdir -p $(@D) && touch $@

$(EMBED_HOST): examples/embed/host.c $(LIB_SO) csrc/include/ringpool.h | setup-embed
	@mkdir -p $(@D)
	$(CC) $(WARN) -O2 -g $$($(PYTHON_CONFIG) --includes) -Icsrc/include $< -o $@ \
	  $$($(PYTHON_CONFIG) --ldflags --embed) -L$(BUILD) -Wl,-rpath,$(abspath $(BUILD)) -lringpool

# tests/embed: a few cycles plain, under the interposer (the same result line), through
# run --cycles (residue per cycle stable, the pool of every domain agreeing with the
# interposer), the RAW domain in a pool tagged by cycle; bad arguments refused.
test-embed: $(EMBED_HOST) preload lib setup-py
	$(PY) -m mypy --strict --follow-imports=silent tests/embed
	EMBED_HOST=$(abspath $(EMBED_HOST)) RINGPOOL_PRELOAD_LIB=$(abspath $(PRELOAD_SO)) \
	  $(PY) -m pytest -q -p no:cacheprovider tests/embed

embed-residue: $(EMBED_HOST)
	@echo "== PYTHONMALLOC=malloc (every object on the C heap)"
	PYTHONMALLOC=malloc $(EMBED_HOST) examples/embed/cycle.py $(EMBED_CYCLES) 2>/dev/null
	@echo "== pymalloc (objects of 512 bytes or less in mmap'd arenas, not counted)"
	$(EMBED_HOST) examples/embed/cycle.py $(EMBED_CYCLES) 2>/dev/null
	@echo "== pymalloc, CPython's RAW domain in a ringpool pool (raw and > 512-byte blocks)"
	env -u PYTHONMALLOC $(EMBED_HOST) --pool raw examples/embed/cycle.py $(EMBED_CYCLES) 2>/dev/null

# One run per count under the interposer (whole stacks, 64 frames), every object on the C heap.
embed-residue-sites: $(EMBED_HOST) preload setup-py
	rm -rf $(BUILD)/embed/sites
	PYTHONMALLOC=malloc $(PY) -m audit run --preload --stack-depth $(EMBED_STACK_DEPTH) \
	  --cycles $(EMBED_SITE_CYCLES) --by $(EMBED_BY) \
	  --top $(EMBED_TOP) --report-dir $(BUILD)/embed/sites --output $(BUILD)/embed/sites.txt --force \
	  -- $(EMBED_HOST) examples/embed/cycle.py '{cycles}'
	@cat $(BUILD)/embed/sites.txt

# The pool of the RAW domain (and of every domain: EMBED_POOL=all), tagged by importing module.
EMBED_POOL ?= all
embed-residue-pool: $(EMBED_HOST) setup-py
	rm -rf $(BUILD)/embed/pool
	env -u PYTHONMALLOC $(PY) -m audit run --cycles $(EMBED_SITE_CYCLES) --top $(EMBED_TOP) \
	  --report-dir $(BUILD)/embed/pool --output $(BUILD)/embed/pool.txt --force \
	  -- $(EMBED_HOST) --pool $(EMBED_POOL) --tag module examples/embed/cycle.py '{cycles}'
	@cat $(BUILD)/embed/pool.txt
