# mk/poolstack.mk -- pools that record allocation stacks (csrc/poolstack.c).
# tests/c/test_pool_stacks.c runs in test-c-plain, -valgrind and -asan like
# every C test; threads share a stack pool there, so it runs under TSan too.
# tests/c/test_pool_stack_pages.c (stacks of the program's own whose pages
# go between two walks) runs in the same three.
test-c-tsan: $(TSAN_DIR)/test_pool_stacks
TSAN_BINS += $(TSAN_DIR)/test_pool_stacks

# csrc/poolstack.c #includes csrc/stack/*.c: rebuild it when they change.
POOLSTACK_DEPS := $(wildcard csrc/stack/*.c csrc/stack/*.h)
$(BUILD)/obj/poolstack.o $(ASAN_DIR)/obj/poolstack.o $(TSAN_DIR)/obj/poolstack.o \
    $(FUZZ_DIR)/lf-obj/poolstack.o: $(POOLSTACK_DEPS)
