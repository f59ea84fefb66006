# Allocation traces of real programs, replayed against every allocator
# (benches/c/trace/, benches/c/replay.c, benches/c/traces.sh; docs/benchmarks.md).
#   make bench-traces    records the traces (cc1, python3, sqlite3, churn) into
#                        build/traces, then replays them: instructions per
#                        operation (callgrind), peak memory, wall medians.
#                        Part of `make bench-c`.
#   test-bench-traces    the recorder and the replay on a tiny program, in
#                        seconds; run by test-bench-c (so by `make test`).
TRACE_DIR     := $(BUILD)/traces
RPTRACE_SO    := $(BENCH_C_DIR)/rptrace.so
REPLAY_BIN    := $(BENCH_C_DIR)/replay
TRACE_CHURN   := $(BENCH_C_DIR)/churn
TRACE_TINY    := $(BENCH_C_DIR)/tiny
TRACES_ARGS   ?=
TRACE_PACKAGES := sqlite3 python3 gcc valgrind

.PHONY: bench-traces record-traces test-bench-traces

$(RPTRACE_SO): benches/c/trace/rptrace.c benches/c/trace/trace.h csrc/stack/rawmem.h
	@mkdir -p $(@D)
	$(CC) $(WARN) -O2 -g -fPIC -shared -fvisibility=hidden -ftls-model=initial-exec \
	    -Icsrc/stack -Ibenches/c/trace $< -o $@

$(REPLAY_BIN): benches/c/replay.c benches/c/trace/trace.h benches/c/sizes.h csrc/geometric.h csrc/peers.h csrc/include/ringpool.h $(LIB_A)
	@mkdir -p $(@D)
	$(CC) $(WARN) -O2 -g -Icsrc/include -Ibenches/c $< $(LIB_A) -o $@ -ldl -lpthread

$(TRACE_CHURN) $(TRACE_TINY): $(BENCH_C_DIR)/%: benches/c/trace/%.c benches/c/sizes.h csrc/geometric.h
	@mkdir -p $(@D)
	$(CC) $(WARN) -O2 -g $< -o $@ -lpthread

# Recorded again when the recorder or a workload changes (not committed: about
# 40 MB in all, a minute to record).
$(TRACE_DIR)/.recorded: $(RPTRACE_SO) $(TRACE_CHURN) benches/c/trace/record.sh \
                        benches/c/trace/pywork.py benches/preload/overhead.py | $(REPLAY_BIN)
	$(call apt_install,$(TRACE_PACKAGES))
	benches/c/trace/record.sh -o $(TRACE_DIR) -l $(RPTRACE_SO) -c $(TRACE_CHURN) -r $(REPLAY_BIN)
	@touch $@

record-traces: $(TRACE_DIR)/.recorded

bench-traces: $(TRACE_DIR)/.recorded $(REPLAY_BIN) setup-sys bench-peers
	set -o pipefail; benches/c/traces.sh -b $(REPLAY_BIN) -d $(TRACE_DIR) $(TRACES_ARGS) \
	    | tee $(BENCH_C_DIR)/traces.md

bench-c: bench-traces

test-bench-traces: $(RPTRACE_SO) $(REPLAY_BIN) $(TRACE_CHURN) $(TRACE_TINY) setup-sys
	benches/c/trace/smoke.sh $(BENCH_C_DIR)

test-bench-c: test-bench-traces
