# mk/ctest.mk -- the C tests (tests/c/), the examples and the build checks of
# issues 2 and 5.  `make test-c` runs, for both backings (malloc, arena):
#   test-c-plain     every tests/c/test_*.c linked against build/libringpool.so
#   test-c-valgrind  the same under memcheck: 0 errors, 0 bytes lost of any kind
#   test-c-asan      csrc/*.c compiled into each test with ASan+UBSan
#   test-c-tsan      the thread tests with csrc/*.c compiled with TSan
#   test-c-exports   only rp_ symbols are exported by libringpool.so
#   test-c-header    ringpool.h in programs: every macro and declaration built
#                    with gcc, clang, g++ and clang++ (C89 to C2x, C++98 to
#                    C++20) under strict warnings and -Werror, and run
#   test-c-install   make install into a temporary prefix, examples/hello.c
#                    built there with pkg-config and run
#   test-c-plugin    10,000 plugin load/use/unload cycles (RSS growth < 1 MiB)
#                    and 100 cycles under valgrind with nothing lost
# One program, one backing: build/ctest/test_alloc arena [case]

CTEST_DIR    := $(BUILD)/ctest
# test-c-header builds the header's consumers with clang and clang++ too
SYS_PACKAGES += clang
CTEST_SRCS   := $(sort $(wildcard tests/c/test_*.c))
CTEST_NAMES  := $(patsubst tests/c/%.c,%,$(CTEST_SRCS))
CTEST_BINS   := $(addprefix $(CTEST_DIR)/,$(CTEST_NAMES))
CTEST_HDRS   := tests/c/testutil.h tests/c/fchmod_intrude.h tests/stacks/stale_pages.h csrc/include/ringpool.h
CTEST_CFLAGS := $(WARN) -O1 -g -D_GNU_SOURCE -Icsrc/include -Itests/c -pthread
CTEST_BACKINGS := malloc arena
# Reports are asked for by the tests themselves, never by the caller's shell.
CTEST_ENV    := env -u RINGPOOL_REPORT -u RINGPOOL_REPORT_BLOCKS TMPDIR=$(abspath $(CTEST_DIR))/tmp
# --fair-sched: valgrind runs one thread at a time; with its default lock the
# thread that gives the CPU up (end of its time slice, a syscall) mostly takes
# it back at once, so a thread that never blocks (test_contention's loop of
# snapshots, its swap workers) can keep a thread that waits for a lock from
# running for seconds (minutes in a loaded run). The fair lock takes turns.
CTEST_VALGRIND := valgrind -q --fair-sched=try --error-exitcode=99 --leak-check=full \
                  --show-leak-kinds=all --errors-for-leak-kinds=all

# Sanitizer builds compile the library sources straight into the tests.
CTEST_SAN_LIB := $(LIB_SRCS)
ASAN_DIR     := $(BUILD)/asan
ASAN_FLAGS   := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
ASAN_OBJS    := $(patsubst csrc/%.c,$(ASAN_DIR)/obj/%.o,$(CTEST_SAN_LIB))
ASAN_BINS    := $(addprefix $(ASAN_DIR)/,$(CTEST_NAMES))
ASAN_ENV     := ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:exitcode=98:allocator_may_return_null=1 \
                UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
TSAN_DIR     := $(BUILD)/tsan
TSAN_FLAGS   := -fsanitize=thread -fno-omit-frame-pointer
TSAN_OBJS    := $(patsubst csrc/%.c,$(TSAN_DIR)/obj/%.o,$(CTEST_SAN_LIB))
TSAN_BINS    := $(TSAN_DIR)/test_threads $(TSAN_DIR)/test_memprof $(TSAN_DIR)/test_contention
# (kept between runs: they are rebuilt only when csrc/ changes)
.SECONDARY: $(ASAN_OBJS) $(TSAN_OBJS)
TSAN_ENV     := TSAN_OPTIONS=halt_on_error=1:exitcode=97:second_deadlock_stack=1 RP_TEST_TSAN=1

# Examples, built against the installed library.
CTEST_PREFIX := $(abspath $(CTEST_DIR))/prefix
CTEST_PKG    := PKG_CONFIG_PATH=$(CTEST_PREFIX)/lib/pkgconfig pkg-config
PLUGIN_SO    := $(CTEST_DIR)/examples/plugin.so
PLUGIN_HOST  := $(CTEST_DIR)/examples/host
PLUGIN_CYCLES ?= 10000
PLUGIN_VALGRIND_CYCLES ?= 100
PLUGIN_RSS_LIMIT_KIB ?= 1024

.PHONY: test-c test-c-plain test-c-valgrind test-c-asan test-c-tsan \
        test-c-exports test-c-header test-c-install test-c-plugin ctest-bins
TEST_TARGETS += test-c

test-c: test-c-plain test-c-valgrind test-c-asan test-c-tsan test-c-exports \
        test-c-header test-c-install test-c-plugin
	@echo "test-c: all C suites passed"

ctest-bins: $(CTEST_BINS)

# ---------------------------------------------------------------- plain
$(CTEST_DIR)/%: tests/c/%.c $(CTEST_HDRS) $(LIB_SO)
	@mkdir -p $(@D)/tmp
	$(CC) $(CTEST_CFLAGS) $< -o $@ -L$(BUILD) -Wl,-rpath,$(abspath $(BUILD)) -lringpool

# Runs $(1) (a list of programs) once per backing, prefixed by $(2); runs
# them all, then fails if any failed, naming them.
define ctest_run
	@mkdir -p $(CTEST_DIR)/tmp
	@failed=""; for t in $(1); do for b in $(CTEST_BACKINGS); do \
	  echo "== $(3)$$t $$b"; \
	  $(CTEST_ENV) $(2) $$t $$b || failed="$$failed $$t:$$b"; \
	done; done; \
	if [ -n "$$failed" ]; then echo "FAILED ($(3)):$$failed"; exit 1; fi
endef

# The arena's suites again with headerless slots up to 64 bytes
# (RINGPOOL_HEADERLESS=64: docs/contract.md).
CTEST_HL64 := $(addprefix $(CTEST_DIR)/,test_alloc test_arena_layout test_arena_resize \
              test_resize_in_place test_stats test_safety test_threads test_memprof test_report)
define ctest_run_hl64
	@failed=""; for t in $(1); do \
	  echo "== $(3)$$t arena RINGPOOL_HEADERLESS=64"; \
	  $(CTEST_ENV) RINGPOOL_HEADERLESS=64 $(2) $$t arena || failed="$$failed $$t"; \
	done; \
	if [ -n "$$failed" ]; then echo "FAILED ($(3)RINGPOOL_HEADERLESS=64):$$failed"; exit 1; fi
endef

test-c-plain: setup-sys lib $(CTEST_BINS)
	$(call ctest_run,$(CTEST_BINS),,)
	$(call ctest_run_hl64,$(CTEST_HL64),,)

test-c-valgrind: setup-sys lib $(CTEST_BINS)
	$(call ctest_run,$(CTEST_BINS),RP_TEST_QUICK=1 $(CTEST_VALGRIND),valgrind )

# ---------------------------------------------------------------- ASan+UBSan
$(ASAN_DIR)/obj/%.o: csrc/%.c $(wildcard csrc/*.h) csrc/include/ringpool.h
	@mkdir -p $(@D)
	$(CC) $(WARN) -O1 -g $(ASAN_FLAGS) $(CPPFLAGS_LIB) -c $< -o $@

$(ASAN_DIR)/%: tests/c/%.c $(CTEST_HDRS) $(ASAN_OBJS)
	@mkdir -p $(@D)
	$(CC) $(CTEST_CFLAGS) $(ASAN_FLAGS) $< $(ASAN_OBJS) -o $@

test-c-asan: setup-sys $(ASAN_BINS)
	$(call ctest_run,$(ASAN_BINS),$(ASAN_ENV),asan )
	$(call ctest_run_hl64,$(patsubst $(CTEST_DIR)/%,$(ASAN_DIR)/%,$(CTEST_HL64)),$(ASAN_ENV),asan )

# ---------------------------------------------------------------- TSan
$(TSAN_DIR)/obj/%.o: csrc/%.c $(wildcard csrc/*.h) csrc/include/ringpool.h
	@mkdir -p $(@D)
	$(CC) $(WARN) -O1 -g $(TSAN_FLAGS) $(CPPFLAGS_LIB) -c $< -o $@

$(TSAN_DIR)/%: tests/c/%.c $(CTEST_HDRS) $(TSAN_OBJS)
	@mkdir -p $(@D)
	$(CC) $(CTEST_CFLAGS) $(TSAN_FLAGS) $< $(TSAN_OBJS) -o $@

test-c-tsan: setup-sys $(TSAN_BINS)
	$(call ctest_run,$(TSAN_BINS),$(TSAN_ENV),tsan )
	$(call ctest_run_hl64,$(TSAN_BINS),$(TSAN_ENV),tsan )

# ---------------------------------------------------------------- exports
test-c-header: setup-sys lib
	tests/c/header/check.sh $(BUILD)

test-c-exports: setup-sys lib
	@syms=$$(nm -D --defined-only $(LIB_SO) | awk 'NF == 3 { print $$3 }'); \
	bad=$$(printf '%s\n' $$syms | grep -v '^rp_' || true); \
	n=$$(printf '%s\n' $$syms | grep -c '^rp_'); \
	if [ -n "$$bad" ]; then echo "test-c-exports: non-rp_ symbols exported by $(LIB_SO):"; \
	  printf '  %s\n' $$bad; exit 1; fi; \
	if [ "$$n" -lt 40 ]; then echo "test-c-exports: only $$n rp_ symbols exported"; exit 1; fi; \
	for s in rp_pool_create rp_alloc rp_alloc_noexc rp_free rp_stat_alloc rp_pool_stats \
	         rp_strerror rp_pool_create_child rp_pool_reset rp_set_destructor; do \
	  printf '%s\n' $$syms | grep -qx "$$s" || { echo "test-c-exports: $$s not exported"; exit 1; }; \
	done; \
	echo "test-c-exports: $$n symbols, all rp_"

# ---------------------------------------------------------------- install
$(CTEST_DIR)/.installed: $(LIB_SO) $(LIB_A) csrc/include/ringpool.h ringpool.pc.in
	rm -rf $(CTEST_PREFIX)
	$(MAKE) --no-print-directory install PREFIX=$(CTEST_PREFIX)
	@touch $@

$(CTEST_DIR)/examples/hello: examples/hello.c $(CTEST_DIR)/.installed
	@mkdir -p $(@D)
	$(CC) $(WARN) -O2 examples/hello.c $$($(CTEST_PKG) --cflags --libs ringpool) \
	    -Wl,-rpath,$(CTEST_PREFIX)/lib -o $@

test-c-install: setup-sys $(CTEST_DIR)/examples/hello
	@test -f $(CTEST_PREFIX)/include/ringpool.h
	@test -f $(CTEST_PREFIX)/lib/libringpool.a
	@test "$$($(CTEST_PKG) --modversion ringpool)" = $(VERSION)
	@ldd $(CTEST_DIR)/examples/hello | grep -q '$(CTEST_PREFIX)/lib/libringpool.so.0' || \
	  { echo "hello is not linked against the installed library"; ldd $(CTEST_DIR)/examples/hello; exit 1; }
	@rm -rf $(CTEST_DIR)/tmp/hello && mkdir -p $(CTEST_DIR)/tmp/hello
	@out=$$(RINGPOOL_REPORT=$(CTEST_DIR)/tmp/hello/%n.json $(CTEST_DIR)/examples/hello) || exit 1; \
	echo "$$out"; \
	echo "$$out" | grep -q "^hello, ringpool$$" && \
	echo "$$out" | grep -Eq "^ +cache +2 +1024 .*outstanding" && \
	echo "$$out" | grep -Eq "^ +tokens +0 +0 " && \
	grep -q '"ringpool-snapshot"' $(CTEST_DIR)/tmp/hello/hello.json || \
	  { echo "test-c-install: unexpected output or report from hello"; exit 1; }
	$(CTEST_VALGRIND) $(CTEST_DIR)/examples/hello > /dev/null
	@echo "test-c-install: installed, built with pkg-config, ran clean"

# ---------------------------------------------------------------- plugin
$(PLUGIN_SO): examples/plugin/plugin.c $(CTEST_DIR)/.installed
	@mkdir -p $(@D)
	$(CC) $(WARN) -O2 -g -shared -fPIC examples/plugin/plugin.c \
	    $$($(CTEST_PKG) --cflags --libs ringpool) -Wl,-rpath,$(CTEST_PREFIX)/lib -o $@

$(PLUGIN_HOST): examples/plugin/host.c
	@mkdir -p $(@D)
	$(CC) $(WARN) -O2 -g $< -o $@ -ldl

test-c-plugin: setup-sys $(PLUGIN_SO) $(PLUGIN_HOST)
	$(PLUGIN_HOST) $(abspath $(PLUGIN_SO)) $(PLUGIN_CYCLES) $(PLUGIN_RSS_LIMIT_KIB)
	$(CTEST_VALGRIND) $(PLUGIN_HOST) $(abspath $(PLUGIN_SO)) $(PLUGIN_VALGRIND_CYCLES)
	@if $(PLUGIN_HOST) $(abspath $(PLUGIN_SO)) 0 2>/dev/null; then \
	  echo "host accepted 0 cycles"; exit 1; fi
	@echo "test-c-plugin: passed"
