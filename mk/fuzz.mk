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
FUZZ_SCENARIOS := $(sort $(wildcard tests/fuzz/scenarios/*))
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

.PHONY: test-fuzz fuzz fuzz-merge fuzz-replay setup-fuzz fuzz-coverage setup-fuzz-coverage \
        test-fuzz-coverage
.SECONDARY: $(FUZZ_LF_OBJS)
TEST_TARGETS += test-fuzz test-fuzz-coverage

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
	  for f in $(FUZZ_SCENARIOS); do \
	    $(FUZZ_ENV) $(2) $(1) --oom $$b --scenario $$f; done; \
	done
endef

# The whole workload of make test-fuzz, on drivers $(1) (plain) and $(2)
# (sanitizers, run with environment $(3)), with $(4) in front of the plain
# driver for the valgrind pass (fuzz-coverage runs it on one coverage driver).
define fuzz_workload
	$(call fuzz_pass,$(1),,$(FUZZ_RUNS))
	$(call fuzz_pass,$(2),$(3),$(FUZZ_ASAN_RUNS))
	@# headerless slots up to 64 bytes (55% of the picked sizes are 0..64)
	$(FUZZ_ENV) RINGPOOL_HEADERLESS=64 $(1) --runs $(FUZZ_RUNS) --seed $(FUZZ_SEED)
	$(FUZZ_ENV) RINGPOOL_HEADERLESS=64 $(3) $(2) --runs $(FUZZ_ASAN_RUNS) --seed $(FUZZ_SEED)
	@# the corpus too, with the region cut to one chunk per slot size (exhaustion)
	$(FUZZ_ENV) RINGPOOL_HEADERLESS=64 RINGPOOL_TEST_HL_CHUNKS=1 $(3) $(2) $(FUZZ_CORPUS)/*
	@# processes that never have a checked pool (its records would keep rp_free's
	@# slow test on): the unchecked fast paths of rp_free, resize and the arena
	$(FUZZ_ENV) FUZZ_UNCHECKED=1 $(1) --runs $(FUZZ_RUNS) --seed $(FUZZ_SEED)
	$(FUZZ_ENV) FUZZ_UNCHECKED=1 RINGPOOL_HEADERLESS=64 $(3) $(2) --runs $(FUZZ_ASAN_RUNS) --seed $(FUZZ_SEED)
	$(FUZZ_ENV) FUZZ_UNCHECKED=1 $(3) $(2) $(FUZZ_CORPUS)/*
	$(FUZZ_ENV) FUZZ_UNCHECKED=1 $(1) --oom arena --seed $(FUZZ_SEED) --len 1500
	@# the same with headerless slots up to 64 bytes, whose chunks the injection refuses
	$(FUZZ_ENV) FUZZ_UNCHECKED=1 RINGPOOL_HEADERLESS=64 $(1) --oom arena --seed $(FUZZ_SEED) --len 1500
	$(FUZZ_ENV) $(4) $(1) --runs $(FUZZ_VALGRIND_RUNS) --seed $(FUZZ_SEED)
	@# every scenario in one process per backing (valgrind starts twice)
	@set -e; for b in malloc arena; do \
	  echo "$(strip $(4) $(1)) --oom $$b$(foreach f,$(FUZZ_SCENARIOS), --scenario $(f))"; \
	  $(FUZZ_ENV) $(4) $(1) --oom $$b $(foreach f,$(FUZZ_SCENARIOS),--scenario $(f)); done
endef

test-fuzz: setup-sys $(FUZZ_BIN) $(FUZZ_ASAN_BIN)
	$(call fuzz_workload,$(FUZZ_BIN),$(FUZZ_ASAN_BIN),$(FUZZ_ASAN_ENV),$(CTEST_VALGRIND))
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

# ---------------------------------------------------------------- coverage
# make fuzz-coverage: the library and the plain driver built by clang with
# source-based coverage, run over the whole workload of make test-fuzz (each
# sanitizer or valgrind pass by the coverage driver, with the same arguments
# and environment), the profiles merged by llvm-profdata, llvm-cov's per-file
# summary of csrc/ printed and an HTML report written to
# build/fuzz-coverage/html/index.html. Not part of make test (a clang build
# of the library and the workload again: about as long as make test-fuzz).
# llvm-profdata and llvm-cov must be those of the clang that compiled (the
# raw profile format changes between LLVM versions): the ones of its major
# version (Debian: llvm-profdata-14 from llvm-14), found by fuzz_llvm_tool.
FUZZ_COV_DIR  := $(BUILD)/fuzz-coverage
FUZZ_COV_BIN  := $(FUZZ_COV_DIR)/fuzz_pool
FUZZ_COV_FLAGS := -fprofile-instr-generate -fcoverage-mapping
FUZZ_COV_OBJS := $(patsubst csrc/%.c,$(FUZZ_COV_DIR)/obj/%.o,$(LIB_SRCS))
FUZZ_COV_SYS_PACKAGES := clang llvm-14 libclang-rt-14-dev
.SECONDARY: $(FUZZ_COV_OBJS)

# $(call fuzz_llvm_tool,NAME): NAME of FUZZ_CLANG's LLVM: NAME-<major>, then
# /usr/lib/llvm-<major>/bin/NAME, then NAME only if it reports that version.
fuzz_llvm_tool = $(shell v=$$($(FUZZ_CLANG) -dumpversion 2>/dev/null | cut -d. -f1); \
  for t in $(1)-$$v /usr/lib/llvm-$$v/bin/$(1); do \
    command -v $$t 2>/dev/null && exit 0; done; \
  $(1) --version 2>/dev/null | grep -q "version $$v\." && command -v $(1))

setup-fuzz-coverage: $(STAMPS)/fuzz-cov-sys
$(STAMPS)/fuzz-cov-sys:
	@mkdir -p $(@D)
	$(call apt_install,$(FUZZ_COV_SYS_PACKAGES))
	@touch $@

$(FUZZ_COV_DIR)/obj/%.o: csrc/%.c $(wildcard csrc/*.h) csrc/include/ringpool.h | $(STAMPS)/fuzz-cov-sys
	@mkdir -p $(@D)
	$(FUZZ_CLANG) $(WARN) -Wno-unknown-pragmas -Wno-unknown-attributes -O1 -g $(FUZZ_COV_FLAGS) $(CPPFLAGS_LIB) -c $< -o $@

# (the objects in LIB_SRCS order, as in the library: csrc/poolstack.c)
$(FUZZ_COV_BIN): $(FUZZ_DEPS) $(FUZZ_COV_OBJS) | $(STAMPS)/fuzz-cov-sys
	@mkdir -p $(@D)/tmp $(@D)/artifacts
	$(FUZZ_CLANG) $(FUZZ_CFLAGS) $(FUZZ_COV_FLAGS) -DFUZZ_COVERAGE $(FUZZ_SRC) $(FUZZ_COV_OBJS) -lpthread -o $@

# Every process adds its counts to one of 4 raw profiles (%4m: merged in place,
# under a lock), removed first so that a run counts only itself. The results
# go to FUZZ_COV_OUT (the smoke check below uses a directory of its own).
FUZZ_COV_OUT  ?= $(FUZZ_COV_DIR)
fuzz-coverage: FUZZ_ENV += LLVM_PROFILE_FILE=$(abspath $(FUZZ_COV_OUT))/prof/fuzz-%4m.profraw \
                           TMPDIR=$(abspath $(FUZZ_COV_OUT))/tmp FUZZ_ARTIFACTS=$(abspath $(FUZZ_COV_OUT))/artifacts
fuzz-coverage: setup-sys $(FUZZ_COV_BIN)
	@profdata="$(call fuzz_llvm_tool,llvm-profdata)"; cov="$(call fuzz_llvm_tool,llvm-cov)"; \
	 test -n "$$profdata" -a -n "$$cov" || { echo "fuzz-coverage: no llvm-profdata/llvm-cov of $(FUZZ_CLANG)'s version (make setup-fuzz-coverage)"; exit 1; }
	rm -rf $(FUZZ_COV_OUT)/prof $(FUZZ_COV_OUT)/html && mkdir -p $(FUZZ_COV_OUT)/prof $(FUZZ_COV_OUT)/tmp $(FUZZ_COV_OUT)/artifacts
	$(call fuzz_workload,$(FUZZ_COV_BIN),$(FUZZ_COV_BIN),,)
	$(call fuzz_llvm_tool,llvm-profdata) merge -sparse -o $(FUZZ_COV_OUT)/fuzz.profdata $(FUZZ_COV_OUT)/prof/*.profraw
	$(call fuzz_llvm_tool,llvm-cov) show $(FUZZ_COV_BIN) -instr-profile=$(FUZZ_COV_OUT)/fuzz.profdata \
	    -format=html -show-line-counts-or-regions -output-dir=$(FUZZ_COV_OUT)/html $(abspath csrc)
	$(call fuzz_llvm_tool,llvm-cov) report $(FUZZ_COV_BIN) -instr-profile=$(FUZZ_COV_OUT)/fuzz.profdata \
	    $(abspath csrc) | tee $(FUZZ_COV_OUT)/summary.txt
	@echo "fuzz-coverage: $(FUZZ_COV_OUT)/summary.txt, $(FUZZ_COV_OUT)/html/index.html"

# make test-fuzz-coverage (part of make test): the target on a tiny workload
# (a few random inputs, two corpus files, one short scenario): the tools are
# found, every pass runs, and the summary and the HTML report name pool.c with
# lines covered. The clang build of the library is most of its cost.
FUZZ_COV_SMOKE := $(FUZZ_COV_DIR)/smoke
test-fuzz-coverage: setup-sys $(FUZZ_COV_BIN)
	rm -rf $(FUZZ_COV_SMOKE) && mkdir -p $(FUZZ_COV_SMOKE)/corpus
	cp $(FUZZ_CORPUS)/seed-every-pool $(FUZZ_CORPUS)/seed-threads $(FUZZ_COV_SMOKE)/corpus/
	$(MAKE) --no-print-directory fuzz-coverage FUZZ_COV_OUT=$(FUZZ_COV_SMOKE) FUZZ_RUNS=20 \
	    FUZZ_ASAN_RUNS=10 FUZZ_VALGRIND_RUNS=5 FUZZ_OOM_LEN=100 FUZZ_CORPUS=$(FUZZ_COV_SMOKE)/corpus \
	    FUZZ_SCENARIOS=tests/fuzz/scenarios/calloc-big-reused > $(FUZZ_COV_SMOKE)/log 2>&1 \
	    || { tail -20 $(FUZZ_COV_SMOKE)/log; exit 1; }
	@awk '$$1 == "pool.c" && $$8 > $$9 { ok = 1 } END { exit !ok }' $(FUZZ_COV_SMOKE)/summary.txt \
	    || { echo "test-fuzz-coverage: no covered line of pool.c in the summary"; cat $(FUZZ_COV_SMOKE)/summary.txt; exit 1; }
	@grep -q 'pool.c' $(FUZZ_COV_SMOKE)/html/index.html \
	    || { echo "test-fuzz-coverage: the HTML report does not list pool.c"; exit 1; }
	@echo "test-fuzz-coverage: passed ($$(awk '$$1 == "pool.c" { print $$10 " of pool.c" }' $(FUZZ_COV_SMOKE)/summary.txt)'s lines on the tiny run)"
