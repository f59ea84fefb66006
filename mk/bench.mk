# C microbenchmarks (benches/c/, issues 2 and 5). None of this runs in `make test`
# except test-bench-c, a seconds-long smoke run that keeps the benches building.
#   make bench-c       wall-time tables, then instruction counts under callgrind
#   make bench-peers   installs talloc, APR, mimalloc and jemalloc (Debian packages)
#                      so the benches compare against them
BENCH_C_DIR  := $(BUILD)/bench-c
BENCH_C_BIN  := $(BENCH_C_DIR)/bench
BENCH_C_ARGS ?=
CALLGRIND_ARGS ?=
PEER_PACKAGES := libtalloc-dev libapr1-dev libmimalloc-dev libjemalloc-dev

.PHONY: bench-c bench-c-wall bench-c-callgrind test-bench-c
TEST_TARGETS += test-bench-c

$(BENCH_C_BIN): benches/c/bench.c benches/c/sizes.h csrc/geometric.h csrc/peers.h csrc/include/ringpool.h $(LIB_A)
	@mkdir -p $(@D)
	$(CC) $(WARN) -O2 -g -Icsrc/include $< $(LIB_A) -o $@ -ldl -lpthread

# Pools that record stacks on coroutine stacks and on the thread's own
# (benches/c/coro.c, coro.sh; docs/benchmarks.md).
BENCH_CORO_BIN := $(BENCH_C_DIR)/coro
$(BENCH_CORO_BIN): benches/c/coro.c csrc/include/ringpool.h $(LIB_A)
	@mkdir -p $(@D)
	$(CC) $(WARN) -O2 -g -Icsrc/include $< $(LIB_A) -o $@ -ldl -lpthread

.PHONY: bench-c-coro
bench-c-coro: $(BENCH_CORO_BIN) setup-sys
	set -o pipefail; benches/c/coro.sh -b $(BENCH_CORO_BIN) | tee $(BENCH_C_DIR)/coro.md

bench-c-wall: $(BENCH_C_BIN)
	set -o pipefail; GLIBC_TUNABLES=glibc.rtld.optional_static_tls=16384 $(BENCH_C_BIN) $(BENCH_C_ARGS) \
	    | tee $(BENCH_C_DIR)/wall.md

bench-c-callgrind: $(BENCH_C_BIN) setup-sys
	set -o pipefail; benches/c/callgrind.sh -b $(BENCH_C_BIN) $(CALLGRIND_ARGS) | tee $(BENCH_C_DIR)/callgrind.md
	set -o pipefail; benches/c/callgrind_realloc.sh -b $(BENCH_C_BIN) | tee $(BENCH_C_DIR)/callgrind_realloc.md

bench-c: bench-c-wall bench-c-callgrind

bench-peers: $(STAMPS)/peers
$(STAMPS)/peers:
	@mkdir -p $(@D)
	$(call apt_install,$(PEER_PACKAGES))
	@touch $@

bench: bench-c

test-bench-c: $(BENCH_C_BIN) $(BENCH_CORO_BIN) setup-sys
	benches/c/smoke.sh $(BENCH_C_BIN)
	benches/c/coro.sh -b $(BENCH_CORO_BIN) -d 2 -n 10 -c 10 -r 1 >/dev/null
