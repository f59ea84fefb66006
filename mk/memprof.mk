# mk/memprof.mk -- the sampler (csrc/memprof.c, csrc/preload/sample.c), docs/memprof.md.
# Its tests run with the C suites (tests/c/test_memprof.c, also under TSan),
# tests/python/test_memprof.py and tests/preload/test_sampling.py.
#   make demo-sampling   a leaky program under the interposer, every block
#                        counted, then sampled at 1e-3: estimates beside the truth
#   make bench-memprof   instructions per alloc+free pair with no profile and
#                        with a profile at 1e-4 (callgrind), then the
#                        interposer's sampling mode beside its exact modes and
#                        heaptrack on real programs

MEMPROF_DEMO := $(BUILD)/demo/leaky
MEMPROF_RATE ?= 1e-4
# The last commit before the sampler: its pairs are the "before" column of
# docs/memprof.md, built from `git archive` in a temporary directory.
MEMPROF_BEFORE ?= e12484e
MEMPROF_PAIR_TABLE = awk '/^\#\#\# /{p = /alloc\+free pair/} p'
MEMPROF_PAIRS   = -i glibc,rp-unsync,rp-locked,arena-unsync,arena-locked -s "64 mixed"

.PHONY: demo-sampling bench-memprof

# -O0: every malloc stays a call (no allocation is optimised away)
$(MEMPROF_DEMO): examples/sampling/leaky.c
	@mkdir -p $(@D)
	$(CC) $(WARN) -O0 -g -o $@ $<

demo-sampling: setup-run preload $(MEMPROF_DEMO)
	@echo; echo "== sampling: $(MEMPROF_DEMO) with every block counted"; echo
	$(PY) -m audit run --preload --stack-depth 1 -- $(MEMPROF_DEMO)
	@echo; echo "== the same program sampled at 1e-3 (each byte with probability 1/1000): estimates"; echo
	$(PY) -m audit run --preload --stack-depth 1 --sample-rate 1e-3 --sample-seed 1 -- $(MEMPROF_DEMO)

bench-memprof: $(BENCH_C_BIN) $(PRELOAD_SO) $(BUILD)/preload-bench/alloc_loop bench-peers
	@echo "== alloc+free pairs, the library before the sampler ($(MEMPROF_BEFORE))"
	set -e; d=$$(mktemp -d); trap 'rm -rf "$$d"' EXIT; \
	    git archive $(MEMPROF_BEFORE) | tar -x -C "$$d"; \
	    $(MAKE) -s -C "$$d" build/bench-c/bench >/dev/null; \
	    benches/c/callgrind.sh -b "$$d/build/bench-c/bench" -N 2000 $(MEMPROF_PAIRS) | $(MEMPROF_PAIR_TABLE)
	@echo "== alloc+free pairs, no profile running"
	benches/c/callgrind.sh -b $(BENCH_C_BIN) -N 2000 $(MEMPROF_PAIRS) | $(MEMPROF_PAIR_TABLE)
	@echo "== alloc+free pairs, a profile at $(MEMPROF_RATE) with a counting tracker"
	RPB_MEMPROF_RATE=$(MEMPROF_RATE) benches/c/callgrind.sh -b $(BENCH_C_BIN) -N 2000 $(MEMPROF_PAIRS) | $(MEMPROF_PAIR_TABLE)
	RINGPOOL_PRELOAD_LIB=$(abspath $(PRELOAD_SO)) $(PYTHON_SYS) benches/preload/sampling.py \
	    --alloc-loop $(abspath $(BUILD)/preload-bench/alloc_loop) --rate $(MEMPROF_RATE)
