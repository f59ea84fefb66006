# mk/fuzz.mk -- the model-checked operation fuzzer (tests/fuzz/fuzz_pool.c).
#
#   make test-fuzz     (part of make test) the same harness built with $(CC) as a
#                      deterministic driver: FUZZ_RUNS random inputs from seed
#                      FUZZ_SEED, the committed corpus replayed, and out-of-memory
#                      injection at every allocation of fixed scenarios for both
#                      backings; once plain, once with ASan+UBSan; the same
#                      in processes without checked pools (FUZZ_UNCHECKED=1);
#                      then a short pass and the scenarios' injection under
#                      valgrind.
#   make fuzz          libFuzzer (clang) for FUZZ_SECONDS (default 600), niced, on
#                      tests/fuzz/corpus/ (new inputs are added there); a crash
#                      is saved under build/fuzz/artifacts/.
#   make fuzz-merge    minimises tests/fuzz/corpus/ in place.
#   make fuzz-replay FUZZ_INPUT=file   runs one input (a libFuzzer crash file)
#                      through the plain and ASan drivers with a trace.
#
# FUZZ_SKIPS names the operations of known, not yet fixed library defects that
# the harness avoids (each becomes -DFUZZ_SKIP_<NAME>; see the list at the top
# of tests/fuzz/fuzz_pool.c). Empty it to try them: make fuzz FUZZ_SKIPS=

FUZZ_DIR      := $(BUILD)/fuzz
FUZZ_SRC      := tests/fuzz/fuzz_pool.c
FUZZ_CORPUS   := tests/fuzz/corpus
FUZZ_SKIPS    ?=
FUZZ_DEFS     := $(addprefix -DFUZZ_SKIP_,$(FUZZ_SKIPS))
FUZZ_SEED     ?= 1
FUZZ_RUNS     ?= 2000
FUZZ_ASAN_RUNS ?= 800
FUZZ_VALGRIND_RUNS ?= 100
FUZZ_OOM_LEN  ?= 1800
FUZZ_OOM_SEEDS ?= 1
FUZZ_SECONDS  ?= 600
FUZZ_FLAGS    ?= -max_len=2048 -len_control=20
FUZZ_CFLAGS   := $(WARN) -O1 -g -D_GNU_SOURCE -Icsrc/include $(FUZZ_DEFS)
FUZZ_DEPS     := $(FUZZ_SRC) csrc/include/ringpool.h mk/fuzz.mk

FUZZ_BIN      := $(FUZZ_DIR)/fuzz_pool
FUZZ_ASAN_BIN := $(FUZZ_DIR)/fuzz_pool_asan
FUZZ_LF_BIN   := $(FUZZ_DIR)/fuzz_pool_libfuzzer
FUZZ_ENV      := env -u RINGPOOL_REPORT -u RINGPOOL_REPORT_BLOCKS -u FUZZ_TRACE \
                 TMPDIR=$(abspath $(FUZZ_DIR))/tmp FUZZ_ARTIFACTS=$(abspath $(FUZZ_DIR))/artifacts
FUZZ_ASAN_ENV := ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:exitcode=98:allocator_may_return_null=1 \
                 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

# libFuzzer: clang with the fuzzer runtime (Debian: clang, libclang-rt-14-dev).
FUZZ_CLANG    ?= clang
FUZZ_LF_SAN   := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
FUZZ_LF_OBJS  := $(patsubst csrc/%.c,$(FUZZ_DIR)/lf-obj/%.o,$(LIB_SRCS))
FUZZ_SYS_PACKAGES := clang libclang-rt-14-dev

.PHONY: test-fuzz fuzz fuzz-merge fuzz-replay setup-fuzz
.SECONDARY: $(FUZZ_LF_OBJS)
TEST_TARGETS += test-fuzz

# ---------------------------------------------------------------- drivers
$(FUZZ_BIN): $(FUZZ_DEPS) $(LIB_A)
	@mkdir -p $(@D)/tmp $(@D)/artifacts
	$(CC) $(FUZZ_CFLAGS) $(FUZZ_SRC) $(LIB_A) -lpthread -o $@

$(FUZZ_ASAN_BIN): $(FUZZ_DEPS) $(ASAN_OBJS)
	@mkdir -p $(@D)/tmp $(@D)/artifacts
	$(CC) $(FUZZ_CFLAGS) $(ASAN_FLAGS) $(FUZZ_SRC) $(ASAN_OBJS) -lpthread -o $@

# Runs driver $(1) (env prefix $(2)) over: FUZZ_RUNS=$(3) random inputs, the
# corpus, and OOM injection for both backings on generated and corpus scenarios.
define fuzz_pass
	$(FUZZ_ENV) $(2) $(1) --runs $(3) --seed $(FUZZ_SEED)
	@if ls $(FUZZ_CORPUS)/* >/dev/null 2>&1; then \
	  echo "$(FUZZ_ENV) $(2) $(1) $(FUZZ_CORPUS)/*"; \
	  $(FUZZ_ENV) $(2) $(1) $(FUZZ_CORPUS)/*; fi
	@set -e; for b in malloc arena; do \
	  for s in $(FUZZ_OOM_SEEDS); do \
	    $(FUZZ_ENV) $(2) $(1) --oom $$b --seed $$s --len $(FUZZ_OOM_LEN); done; \
	  for f in $(wildcard tests/fuzz/scenarios/*); do \
	    $(FUZZ_ENV) $(2) $(1) --oom $$b --scenario $$f; done; \
	done
endef

test-fuzz: setup-sys $(FUZZ_BIN) $(FUZZ_ASAN_BIN)
	$(call fuzz_pass,$(FUZZ_BIN),,$(FUZZ_RUNS))
	$(call fuzz_pass,$(FUZZ_ASAN_BIN),$(FUZZ_ASAN_ENV),$(FUZZ_ASAN_RUNS))
	@# headerless slots up to 64 bytes (55% of the picked sizes are 0..64)
	$(FUZZ_ENV) RINGPOOL_HEADERLESS=64 $(FUZZ_BIN) --runs $(FUZZ_RUNS) --seed $(FUZZ_SEED)
	$(FUZZ_ENV) RINGPOOL_HEADERLESS=64 $(FUZZ_ASAN_ENV) $(FUZZ_ASAN_BIN) --runs $(FUZZ_ASAN_RUNS) --seed $(FUZZ_SEED)
	@# the corpus too, with the region cut to one chunk per slot size (exhaustion)
	$(FUZZ_ENV) RINGPOOL_HEADERLESS=64 RINGPOOL_TEST_HL_CHUNKS=1 $(FUZZ_ASAN_ENV) $(FUZZ_ASAN_BIN) $(FUZZ_CORPUS)/*
	@# processes that never have a checked pool (its records would keep rp_free's
	@# slow test on): the unchecked fast paths of rp_free, resize and the arena
	$(FUZZ_ENV) FUZZ_UNCHECKED=1 $(FUZZ_BIN) --runs $(FUZZ_RUNS) --seed $(FUZZ_SEED)
	$(FUZZ_ENV) FUZZ_UNCHECKED=1 RINGPOOL_HEADERLESS=64 $(FUZZ_ASAN_ENV) $(FUZZ_ASAN_BIN) --runs $(FUZZ_ASAN_RUNS) --seed $(FUZZ_SEED)
	$(FUZZ_ENV) FUZZ_UNCHECKED=1 $(FUZZ_ASAN_ENV) $(FUZZ_ASAN_BIN) $(FUZZ_CORPUS)/*
	$(FUZZ_ENV) FUZZ_UNCHECKED=1 $(FUZZ_BIN) --oom arena --seed $(FUZZ_SEED) --len 1500
	$(FUZZ_ENV) $(CTEST_VALGRIND) $(FUZZ_BIN) --runs $(FUZZ_VALGRIND_RUNS) --seed $(FUZZ_SEED)
	@set -e; for b in malloc arena; do for f in $(wildcard tests/fuzz/scenarios/*); do \
	  echo "valgrind: $(FUZZ_BIN) --oom $$b --scenario $$f"; \
	  $(FUZZ_ENV) $(CTEST_VALGRIND) $(FUZZ_BIN) --oom $$b --scenario $$f; done; done
	@echo "test-fuzz: passed (skipped known defects: $(or $(FUZZ_SKIPS),none))"

# ---------------------------------------------------------------- libFuzzer
setup-fuzz: $(STAMPS)/fuzz-sys
$(STAMPS)/fuzz-sys:
	@mkdir -p $(@D)
	$(call apt_install,$(FUZZ_SYS_PACKAGES))
	@touch $@

$(FUZZ_DIR)/lf-obj/%.o: csrc/%.c $(wildcard csrc/*.h) csrc/include/ringpool.h | $(STAMPS)/fuzz-sys
	@mkdir -p $(@D)
	$(FUZZ_CLANG) $(WARN) -Wno-unknown-pragmas -Wno-unknown-attributes -O1 -g -fsanitize=fuzzer-no-link $(FUZZ_LF_SAN) $(CPPFLAGS_LIB) -c $< -o $@

$(FUZZ_LF_BIN): $(FUZZ_DEPS) $(FUZZ_LF_OBJS) | $(STAMPS)/fuzz-sys
	@mkdir -p $(@D)/tmp $(@D)/artifacts
	$(FUZZ_CLANG) $(FUZZ_CFLAGS) -DFUZZ_LIBFUZZER -fsanitize=fuzzer $(FUZZ_LF_SAN) \
	    $(FUZZ_SRC) $(FUZZ_LF_OBJS) -lpthread -o $@

fuzz: setup-sys $(FUZZ_LF_BIN)
	@mkdir -p $(FUZZ_CORPUS)
	$(FUZZ_ENV) $(FUZZ_ASAN_ENV) nice -n 10 $(FUZZ_LF_BIN) -max_total_time=$(FUZZ_SECONDS) \
	    -print_final_stats=1 $(FUZZ_FLAGS) \
	    -artifact_prefix=$(abspath $(FUZZ_DIR))/artifacts/ $(FUZZ_CORPUS)

fuzz-merge: $(FUZZ_LF_BIN)
	rm -rf $(FUZZ_DIR)/merged && mkdir -p $(FUZZ_DIR)/merged
	$(FUZZ_ENV) $(FUZZ_ASAN_ENV) $(FUZZ_LF_BIN) -merge=1 $(FUZZ_DIR)/merged $(FUZZ_CORPUS)
	rm -f $(FUZZ_CORPUS)/* && cp $(FUZZ_DIR)/merged/* $(FUZZ_CORPUS)/

fuzz-replay: $(FUZZ_BIN) $(FUZZ_ASAN_BIN)
	@test -n "$(FUZZ_INPUT)" || { echo "usage: make fuzz-replay FUZZ_INPUT=file"; exit 2; }
	$(FUZZ_ENV) FUZZ_TRACE=1 $(FUZZ_BIN) $(FUZZ_INPUT)
	$(FUZZ_ENV) $(FUZZ_ASAN_ENV) $(FUZZ_ASAN_BIN) $(FUZZ_INPUT)
