# mk/audit-scale.mk -- `ringpool-audit show`/`diff` against the number of tags.
#   make bench-audit-show   1e4 to 1.3e6 tags, beside json.loads of the same file
#                           (pytest-benchmark; CPU seconds per tag in extra_info)
#   test-audit-scale        (in make test) the 1e4 size once, benchmark timing off

.PHONY: bench-audit-show test-audit-scale
TEST_TARGETS += test-audit-scale

bench-audit-show: setup-py
	$(PY) -m pytest -q -p no:cacheprovider benches/audit/test_bench_show_scale.py \
	    --benchmark-group-by=group --benchmark-sort=name \
	    --benchmark-columns=min,median,max,rounds $(AUDIT_SHOW_BENCH_ARGS)

test-audit-scale: setup-py
	$(PY) -m pytest -q -p no:cacheprovider benches/audit/test_bench_show_scale.py \
	    -k "10k or linear" --benchmark-disable
