# mk/poolstack.mk -- pools that record allocation stacks (csrc/poolstack.c).
# tests/c/test_pool_stacks.c runs in test-c-plain, -valgrind and -asan like
# every C test; threads share a stack pool there, so it runs under TSan too.
test-c-tsan: $(TSAN_DIR)/test_pool_stacks
TSAN_BINS += $(TSAN_DIR)/test_pool_stacks
