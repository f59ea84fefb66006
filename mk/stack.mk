# mk/stack.mk -- whole call stacks (csrc/stack/): captured with libunwind,
# which the interposer links (csrc/flags.mk; libunwind-dev is a build package).
SYS_PACKAGES += g++

# Test programs with leaks behind allocation wrappers: -O0 -g so every call
# stays a call and addr2line can name each frame.
STACKS_TEST_DIR  := $(BUILD)/stacks-tests
STACKS_TEST_BINS := $(STACKS_TEST_DIR)/wrappers $(STACKS_TEST_DIR)/wrappers_cxx \
                    $(STACKS_TEST_DIR)/threads_signals $(STACKS_TEST_DIR)/dlcycle \
                    $(STACKS_TEST_DIR)/memo $(STACKS_TEST_DIR)/memo_fork $(STACKS_TEST_DIR)/splice $(STACKS_TEST_DIR)/splice_o2 $(STACKS_TEST_DIR)/slots \
                    $(STACKS_TEST_DIR)/table $(STACKS_TEST_DIR)/odd $(STACKS_TEST_DIR)/first_walk \
                    $(STACKS_TEST_DIR)/plugin1.so $(STACKS_TEST_DIR)/plugin2.so $(STACKS_TEST_DIR)/jitlib.so
CXX ?= g++

.PHONY: stacks-test-bins test-stacks
$(STACKS_TEST_DIR)/wrappers: tests/stacks/wrappers.c
	@mkdir -p $(@D)
	$(CC) $(WARN) -D_GNU_SOURCE -O0 -g -o $@ $<

$(STACKS_TEST_DIR)/memo: tests/stacks/memo.c
	@mkdir -p $(@D)
	$(CC) $(WARN) -D_GNU_SOURCE -O0 -g -fno-omit-frame-pointer -o $@ $<

$(STACKS_TEST_DIR)/memo_fork: tests/stacks/memo_fork.c
	@mkdir -p $(@D)
	$(CC) $(WARN) -D_GNU_SOURCE -O0 -g -o $@ $<

# Stacks that share their outer frames: with frame pointers (every CFA
# rbp-based) and optimised without them (rsp-based, rbp-based where alloca).
$(STACKS_TEST_DIR)/splice: tests/stacks/splice.c tests/stacks/leaf.h
	@mkdir -p $(@D)
	$(CC) $(WARN) -D_GNU_SOURCE -O0 -g -fno-omit-frame-pointer -o $@ $< -lpthread

$(STACKS_TEST_DIR)/splice_o2: tests/stacks/splice.c tests/stacks/leaf.h
	@mkdir -p $(@D)
	$(CC) $(WARN) -D_GNU_SOURCE -O2 -g -fomit-frame-pointer -o $@ $< -lpthread

# Allocations that come back to the same places (the walks kept by place).
$(STACKS_TEST_DIR)/slots: tests/stacks/slots.c tests/stacks/leaf.h
	@mkdir -p $(@D)
	$(CC) $(WARN) -D_GNU_SOURCE -O2 -g -fomit-frame-pointer -o $@ $< -lpthread

# The stack table on its own (stacks sharing outer frames, near misses).
$(STACKS_TEST_DIR)/table: tests/stacks/table.c csrc/stack/stack.c csrc/stack/unwind.c csrc/stack/stack.h csrc/memcheck_glue.h
	@mkdir -p $(@D)
	$(CC) $(WARN) -D_GNU_SOURCE -O2 -g -Icsrc/stack -o $@ tests/stacks/table.c csrc/stack/stack.c \
	    csrc/stack/unwind.c -lunwind -ldl

# A thread's first walk in a signal handler that interrupted malloc
# (tests/stacks/test_first_walk.py): the walker as allocator/_pystack.c
# builds it (RPI_STACK_NO_MAP_HOOKS), in a unit of its own.
$(STACKS_TEST_DIR)/first_walk: tests/stacks/first_walk.c tests/stacks/first_walk_walker.c csrc/stack/stack.c \
                               csrc/stack/unwind.c csrc/stack/stack.h csrc/memcheck_glue.h
	@mkdir -p $(@D)
	$(CC) $(WARN) -D_GNU_SOURCE -O2 -g -Icsrc/stack -o $@ tests/stacks/first_walk.c \
	    tests/stacks/first_walk_walker.c -ldl -lpthread

# Odd stacks (tests/stacks/test_odd_stacks.py): a frame the unwind tables
# misdescribe (odd_frames.S), code built without unwind tables, coroutines,
# small and program-mapped thread stacks, alternate signal stacks, longjmp,
# code outside every module.
$(STACKS_TEST_DIR)/odd_noinfo.o: tests/stacks/odd_noinfo.c
	@mkdir -p $(@D)
	$(CC) $(WARN) -D_GNU_SOURCE -O2 -fno-asynchronous-unwind-tables -fno-unwind-tables \
	    -fomit-frame-pointer -c -o $@ $<

$(STACKS_TEST_DIR)/odd: tests/stacks/odd.c tests/stacks/stale_pages.h tests/stacks/odd_frames.S \
                        $(STACKS_TEST_DIR)/odd_noinfo.o
	@mkdir -p $(@D)
	$(CC) $(WARN) -D_GNU_SOURCE -O0 -g -o $@ tests/stacks/odd.c tests/stacks/odd_frames.S \
	    $(STACKS_TEST_DIR)/odd_noinfo.o -lpthread -ldl

# A library odd.c's jit-then-library mode loads where it had code of its
# own: linked at a fixed address, which the loader asks the kernel for.
$(STACKS_TEST_DIR)/jitlib.so: tests/stacks/jitlib.c
	@mkdir -p $(@D)
	$(CC) $(WARN) -D_GNU_SOURCE -O1 -g -fPIC -shared -Wl,-Ttext-segment=0x200000000000 -o $@ $<

$(STACKS_TEST_DIR)/threads_signals: tests/stacks/threads_signals.c
	@mkdir -p $(@D)
	$(CC) $(WARN) -D_GNU_SOURCE -O0 -g -o $@ $< -lpthread

$(STACKS_TEST_DIR)/dlcycle: tests/stacks/dlcycle.c
	@mkdir -p $(@D)
	$(CC) $(WARN) -D_GNU_SOURCE -O0 -g -o $@ $< -ldl

$(STACKS_TEST_DIR)/plugin%.so: tests/stacks/plugin.c
	@mkdir -p $(@D)
	$(CC) $(WARN) -D_GNU_SOURCE -DVARIANT=$* -O1 -g -fPIC -shared -o $@ $<

$(STACKS_TEST_DIR)/wrappers_cxx: tests/stacks/wrappers_cxx.cpp
	@mkdir -p $(@D)
	$(CXX) -std=c++17 -Wall -Wextra -Werror -O0 -g -o $@ $<

stacks-test-bins: $(STACKS_TEST_BINS)

TEST_TARGETS += test-stacks
test-stacks: setup-sys setup-py $(PRELOAD_SO) $(PRELOAD_UBSAN_SO) stacks-test-bins
	MYPYPATH=tests/stacks $(PY) -m mypy --strict --follow-imports=silent tests/stacks
	RINGPOOL_PRELOAD_LIB=$(abspath $(PRELOAD_SO)) RINGPOOL_STACKS_TESTBIN=$(abspath $(STACKS_TEST_DIR)) \
	    RINGPOOL_PRELOAD_UBSAN_LIB=$(abspath $(PRELOAD_UBSAN_SO)) \
	    PYTHONPATH=. PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 $(PY) -m pytest -q -p no:cacheprovider tests/stacks
