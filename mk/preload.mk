# mk/preload.mk -- libringpool-preload.so, the malloc interposer,
# its test programs, tests and overhead benches. See docs/preload.md.

PRELOAD_SO    := $(BUILD)/libringpool-preload.so
# Sources, flags and libraries are csrc/flags.mk's, which setup.py uses for the wheel's copy too.
PRELOAD_SRCS  := $(sort $(wildcard $(RP_PRELOAD_SRCS)))
PRELOAD_HDRS  := $(wildcard csrc/preload/*.h csrc/stack/*.h) csrc/geometric.h csrc/outfile.h csrc/memcheck_glue.h
PRELOAD_CFLAGS := $(WARN) $(RP_OPT) $(RP_PRELOAD_CFLAGS)
# Test programs: -O0 so every call site stays a call (no inlining, no tail
# calls), -g so addr2line can name function and file:line.
PRELOAD_TEST_DIR  := $(BUILD)/preload-tests
PRELOAD_TEST_SRCS := $(sort $(wildcard tests/preload/*.c))
PRELOAD_TEST_BINS := $(patsubst tests/preload/%.c,$(PRELOAD_TEST_DIR)/%,$(PRELOAD_TEST_SRCS))
# Shared objects the tests load (an async-signal-safe allocator, plugins for
# dlopen): tests/preload/libs/NAME.c -> libNAME.so
PRELOAD_TEST_LIBS := $(patsubst tests/preload/libs/%.c,$(PRELOAD_TEST_DIR)/lib%.so,\
                       $(sort $(wildcard tests/preload/libs/*.c)))
PRELOAD_BENCH_BINS := $(BUILD)/preload-bench/alloc_loop

.PHONY: preload test-preload bench-preload preload-test-bins
preload: $(PRELOAD_SO)

$(PRELOAD_SO): $(PRELOAD_SRCS) $(PRELOAD_HDRS) mk/preload.mk csrc/flags.mk
	@mkdir -p $(@D)
	$(CC) $(PRELOAD_CFLAGS) -shared -Wl,-soname,libringpool-preload.so $(RP_PRELOAD_LDFLAGS) \
	    -o $@ $(PRELOAD_SRCS) $(RP_PRELOAD_LIBS)

# The same sources with UBSan, every finding fatal: run by the tests on the
# C programs (ASan and TSan replace malloc themselves and cannot host an
# interposer; memcheck can: test-preload-memcheck).
PRELOAD_UBSAN_SO := $(BUILD)/libringpool-preload-ubsan.so
$(PRELOAD_UBSAN_SO): $(PRELOAD_SRCS) $(PRELOAD_HDRS) mk/preload.mk
	@mkdir -p $(@D)
	$(CC) $(WARN) -O1 -g -fPIC -ftls-model=initial-exec -fvisibility=hidden -fno-builtin -D_GNU_SOURCE -Icsrc/stack \
	    -fsanitize=undefined -fno-sanitize-recover=all -shared -o $@ $(PRELOAD_SRCS) -lunwind -ldl -lpthread

$(PRELOAD_TEST_DIR)/pools: tests/preload/pools.c $(LIB_SO)
	@mkdir -p $(@D)
	$(CC) $(WARN) -D_GNU_SOURCE -O0 -g -Icsrc/include -o $@ $< -L$(BUILD) -lringpool \
	    -Wl,-rpath,$(abspath $(BUILD))

$(PRELOAD_TEST_DIR)/%: tests/preload/%.c
	@mkdir -p $(@D)
	$(CC) $(WARN) -D_GNU_SOURCE -O0 -g -o $@ $< -lpthread
$(PRELOAD_TEST_DIR)/hostile: tests/c/fchmod_intrude.h
$(PRELOAD_TEST_DIR)/sigalloc $(PRELOAD_TEST_DIR)/sigmix: tests/preload/alarm_every.h
$(PRELOAD_TEST_DIR)/dlswap $(PRELOAD_TEST_DIR)/depswap $(PRELOAD_TEST_DIR)/dlreload: tests/preload/swap_common.h

$(PRELOAD_TEST_DIR)/lib%.so: tests/preload/libs/%.c
	@mkdir -p $(@D)
	$(CC) $(WARN) -D_GNU_SOURCE -O0 -g -fPIC -shared -o $@ $<

# A library with a dependency of its own (tests/preload/depswap.c)
$(PRELOAD_TEST_DIR)/libdep_top.so: tests/preload/libs/dep_top.c $(PRELOAD_TEST_DIR)/libdep_helper.so
	@mkdir -p $(@D)
	$(CC) $(WARN) -D_GNU_SOURCE -O0 -g -fPIC -shared -o $@ $< -L$(@D) -ldep_helper -Wl,-rpath,'$$ORIGIN'

# A statically linked program and a static-pie, which no LD_PRELOAD reaches.
PRELOAD_TEST_STATIC := $(PRELOAD_TEST_DIR)/static_hello $(PRELOAD_TEST_DIR)/static_pie_hello
$(PRELOAD_TEST_DIR)/static_hello: tests/preload/static/hello.c
	@mkdir -p $(@D)
	$(CC) $(WARN) -O0 -static -o $@ $<
$(PRELOAD_TEST_DIR)/static_pie_hello: tests/preload/static/hello.c
	@mkdir -p $(@D)
	$(CC) $(WARN) -O0 -static-pie -o $@ $<

$(BUILD)/preload-bench/%: benches/preload/%.c
	@mkdir -p $(@D)
	$(CC) $(WARN) -D_GNU_SOURCE -O2 -g -o $@ $<

preload-test-bins: $(PRELOAD_SO) $(PRELOAD_UBSAN_SO) $(PRELOAD_TEST_BINS) $(PRELOAD_TEST_LIBS) $(PRELOAD_TEST_STATIC)

TEST_TARGETS += test-preload
test-preload: setup-sys setup-py preload-test-bins
	RINGPOOL_PRELOAD_LIB=$(abspath $(PRELOAD_SO)) RINGPOOL_PRELOAD_TESTBIN=$(abspath $(PRELOAD_TEST_DIR)) \
	    RINGPOOL_PRELOAD_UBSAN_LIB=$(abspath $(PRELOAD_UBSAN_SO)) PYTHONPATH=. PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 $(PY) -m pytest -q -p no:cacheprovider tests/preload

# The interposer under valgrind's memcheck (tests/memcheck): the test
# programs of tests/preload and tests/stacks with whole stacks, every
# memcheck error fatal (about 2 minutes on 2 cores).
TEST_TARGETS += test-preload-memcheck
.PHONY: test-preload-memcheck
test-preload-memcheck: setup-sys setup-py preload-test-bins stacks-test-bins $(LIB_SO)
	$(PY) -m mypy --strict --follow-imports=silent tests/memcheck
	RINGPOOL_PRELOAD_LIB=$(abspath $(PRELOAD_SO)) RINGPOOL_PRELOAD_TESTBIN=$(abspath $(PRELOAD_TEST_DIR)) \
	    RINGPOOL_STACKS_TESTBIN=$(abspath $(STACKS_TEST_DIR)) \
	    PYTHONPATH=. PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 $(PY) -m pytest -q -p no:cacheprovider tests/memcheck

# Overhead benches (not part of `make test`): installs the workloads' programs
# with apt-get only when dpkg says they are missing, then measures.
PRELOAD_BENCH_PACKAGES := heaptrack sqlite3 git valgrind python3 coreutils time
bench-preload: $(PRELOAD_SO) $(PRELOAD_BENCH_BINS)
	$(call apt_install,$(PRELOAD_BENCH_PACKAGES))
	RINGPOOL_PRELOAD_LIB=$(abspath $(PRELOAD_SO)) $(PYTHON_SYS) benches/preload/overhead.py \
	    --alloc-loop $(abspath $(BUILD)/preload-bench/alloc_loop) $(PRELOAD_BENCH_ARGS)
	RINGPOOL_PRELOAD_LIB=$(abspath $(PRELOAD_SO)) $(PYTHON_SYS) benches/preload/instructions.py \
	    --alloc-loop $(abspath $(BUILD)/preload-bench/alloc_loop)

# Symbolizing a report (not part of `make test`): load, symbolize and group by stack
# the report of `git log -p` over a generated repository, by the usual path and by
# the delimited one a name holding a newline takes.
.PHONY: bench-symbolize
bench-symbolize: $(PRELOAD_SO) setup-py
	$(call apt_install,git)
	RINGPOOL_PRELOAD_LIB=$(abspath $(PRELOAD_SO)) PYTHONPATH=. $(PY) benches/preload/symbolize.py
	RINGPOOL_PRELOAD_LIB=$(abspath $(PRELOAD_SO)) PYTHONPATH=. $(PY) benches/preload/symbolize.py --delimited

# Signal soak (not part of `make test`): an allocating SIGALRM handler,
# 200 runs per variant; fails on any hang, crash or miscount.
PRELOAD_SOAK_RUNS ?= 200
.PHONY: soak-preload
soak-preload: preload-test-bins
	RINGPOOL_PRELOAD_LIB=$(abspath $(PRELOAD_SO)) PYTHONPATH=. $(PY) benches/preload/signal_soak.py \
	    --runs $(PRELOAD_SOAK_RUNS) --bin $(abspath $(PRELOAD_TEST_DIR)) --glibc
