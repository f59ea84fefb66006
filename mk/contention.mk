# mk/contention.mk -- threads sharing one thread-safe pool (benches/c/contention.c).
#   make bench-c-contention   2 and 4 threads on one shared pool (both backings)
#                             beside glibc, mimalloc, jemalloc and a pool per
#                             thread; Mops/s medians of interleaved rounds
#                             (part of `make bench-c`)
#   test-bench-contention     (in `make test`) a seconds-long run with tiny
#                             counts and the bad inputs
CONTENTION_BIN  := $(BENCH_C_DIR)/contention
CONTENTION_ARGS ?=
CONTENTION_ENV  := GLIBC_TUNABLES=glibc.rtld.optional_static_tls=16384

.PHONY: bench-c-contention test-bench-contention
TEST_TARGETS += test-bench-contention

$(CONTENTION_BIN): benches/c/contention.c benches/c/sizes.h csrc/peers.h csrc/include/ringpool.h $(LIB_A)
	@mkdir -p $(@D)
	$(CC) $(WARN) -O2 -g -Icsrc/include $< $(LIB_A) -o $@ -ldl -lpthread

bench-c-contention: $(CONTENTION_BIN)
	set -o pipefail; { $(CONTENTION_ENV) $(CONTENTION_BIN) --size 64 $(CONTENTION_ARGS) && \
	  $(CONTENTION_ENV) $(CONTENTION_BIN) --size mixed $(CONTENTION_ARGS); } \
	  | tee $(BENCH_C_DIR)/contention.md

bench-c: bench-c-contention

test-bench-contention: $(CONTENTION_BIN)
	benches/c/contention_smoke.sh $(CONTENTION_BIN)
