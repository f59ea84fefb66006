# mk/contention.mk -- threads sharing one thread-safe pool (benches/c/contention.c).
#   make bench-c-contention   2 and 4 threads on one shared pool (both backings)
#                             beside glibc, mimalloc, jemalloc and a pool per
#                             thread; Mops/s medians of interleaved rounds
#                             (part of `make bench-c`)
#   test-c-static             (in `make test`) the thread suites linked with the
#                             static library, plain and under valgrind
#   test-bench-contention     (in `make test`) a seconds-long run with tiny
#                             counts and the bad inputs
#   test-shared-dlopen        (in `make test`) libringpool.so loaded with
#                             dlopen under glibc's default static TLS
#                             surplus: its thread-local data fits, shared
#                             pools work from other threads, load/unload
#                             cycles, a thread outliving the library (plain
#                             and, without the last, under valgrind)
#   test-c-shared-tsan        (in `make test`) the thread suites under TSan,
#                             linked with a TSan build of the shared library
CONTENTION_BIN  := $(BENCH_C_DIR)/contention
CONTENTION_ARGS ?=
CONTENTION_ENV  := GLIBC_TUNABLES=glibc.rtld.optional_static_tls=16384

.PHONY: bench-c-contention test-bench-contention
TEST_TARGETS += test-bench-contention

$(CONTENTION_BIN): benches/c/contention.c benches/c/sizes.h csrc/geometric.h csrc/peers.h csrc/include/ringpool.h $(LIB_A)
	@mkdir -p $(@D)
	$(CC) $(WARN) -O2 -g -Icsrc/include $< $(LIB_A) -o $@ -ldl -lpthread

# The same program linked with the shared library (which reaches a thread's
# record of its shard in the initial-exec TLS model: an offset from the GOT).
CONTENTION_SO_BIN := $(BENCH_C_DIR)/contention-shared
$(CONTENTION_SO_BIN): benches/c/contention.c benches/c/sizes.h csrc/geometric.h csrc/peers.h csrc/include/ringpool.h $(LIB_SO)
	@mkdir -p $(@D)
	$(CC) $(WARN) -O2 -g -Icsrc/include $< -o $@ -L$(BUILD) -Wl,-rpath,$(abspath $(BUILD)) -lringpool -ldl -lpthread

bench-c-contention: $(CONTENTION_BIN)
	set -o pipefail; { $(CONTENTION_ENV) $(CONTENTION_BIN) --size 64 $(CONTENTION_ARGS) && \
	  $(CONTENTION_ENV) $(CONTENTION_BIN) --size mixed $(CONTENTION_ARGS); } \
	  | tee $(BENCH_C_DIR)/contention.md

bench-c: bench-c-contention

test-bench-contention: $(CONTENTION_BIN)
	benches/c/contention_smoke.sh $(CONTENTION_BIN)

# The thread suites linked with the static library (test-c-plain links the
# shared one): a program linked with it finds a thread's shard of a shared
# pool through a thread-local record (csrc/pool.c), plain and under valgrind.
CONTENTION_STATIC_DIR  := $(BUILD)/ctest-static
CONTENTION_STATIC_BINS := $(CONTENTION_STATIC_DIR)/test_contention $(CONTENTION_STATIC_DIR)/test_threads
.PHONY: test-c-static
TEST_TARGETS += test-c-static

$(CONTENTION_STATIC_DIR)/%: tests/c/%.c tests/c/testutil.h csrc/include/ringpool.h $(LIB_A)
	@mkdir -p $(@D)
	$(CC) $(CTEST_CFLAGS) $< $(LIB_A) -o $@

test-c-static: setup-sys $(CONTENTION_STATIC_BINS)
	$(call ctest_run,$(CONTENTION_STATIC_BINS),,static )
	$(call ctest_run,$(CONTENTION_STATIC_BINS),RP_TEST_QUICK=1 $(CTEST_VALGRIND),static valgrind )

# libringpool.so loaded with dlopen, without GLIBC_TUNABLES: the library's
# code uses the initial-exec TLS model (csrc/pool.c, "the calling thread's
# last shard"), so a dlopen'ed copy must fit all its thread-local data in
# glibc's static TLS surplus (docs/concurrency.md).
DLOPEN_SHARED_BIN := $(BUILD)/ctest-shared/dlopen_shared
.PHONY: test-shared-dlopen
TEST_TARGETS += test-shared-dlopen

$(DLOPEN_SHARED_BIN): tests/c/dlopen_shared.c csrc/include/ringpool.h
	@mkdir -p $(@D)
	$(CC) $(CTEST_CFLAGS) $< -o $@ -ldl

test-shared-dlopen: setup-sys $(LIB_SO) $(DLOPEN_SHARED_BIN)
	@failed=""; for b in malloc arena; do \
	  echo "== dlopen_shared $$b"; \
	  env -u GLIBC_TUNABLES $(DLOPEN_SHARED_BIN) $(abspath $(LIB_SO)) $$b outlive || failed="$$failed $$b"; \
	  echo "== valgrind dlopen_shared $$b"; \
	  env -u GLIBC_TUNABLES $(CTEST_VALGRIND) $(DLOPEN_SHARED_BIN) $(abspath $(LIB_SO)) $$b || failed="$$failed valgrind:$$b"; \
	done; \
	if [ -n "$$failed" ]; then echo "FAILED (test-shared-dlopen):$$failed"; exit 1; fi

# The thread suites under TSan against a shared library built with TSan (the
# initial-exec record of csrc/pool.c, as in libringpool.so; test-c-tsan
# compiles the sources into the tests, where the record is at a constant
# offset).
TSAN_SO_DIR  := $(BUILD)/tsan-shared
TSAN_SO_OBJS := $(patsubst csrc/%.c,$(TSAN_SO_DIR)/obj/%.o,$(LIB_SRCS))
TSAN_SO      := $(TSAN_SO_DIR)/libringpool-tsan.so
TSAN_SO_BINS := $(TSAN_SO_DIR)/test_contention $(TSAN_SO_DIR)/test_threads
.SECONDARY: $(TSAN_SO_OBJS)
.PHONY: test-c-shared-tsan
TEST_TARGETS += test-c-shared-tsan

$(TSAN_SO_DIR)/obj/%.o: csrc/%.c $(wildcard csrc/*.h) csrc/include/ringpool.h csrc/flags.mk
	@mkdir -p $(@D)
	$(CC) $(WARN) -O1 -g $(TSAN_FLAGS) $(RP_LIB_CFLAGS) -c $< -o $@

$(TSAN_SO): $(TSAN_SO_OBJS)
	$(CC) -shared $(TSAN_FLAGS) -Wl,-soname,libringpool-tsan.so -o $@ $^ $(RP_LIB_LIBS)

$(TSAN_SO_DIR)/%: tests/c/%.c tests/c/testutil.h csrc/include/ringpool.h $(TSAN_SO)
	$(CC) $(CTEST_CFLAGS) $(TSAN_FLAGS) $< -o $@ $(TSAN_SO) -Wl,-rpath,$(abspath $(TSAN_SO_DIR))

test-c-shared-tsan: setup-sys $(TSAN_SO_BINS)
	@readelf -d $(TSAN_SO) | grep -q STATIC_TLS || { echo "$(TSAN_SO): no initial-exec TLS"; exit 1; }
	$(call ctest_run,$(TSAN_SO_BINS),$(TSAN_ENV),shared tsan )
