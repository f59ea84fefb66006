# mk/pytsan.mk -- the Python bindings' thread tests under ThreadSanitizer.
#   make test-py-tsan   builds the package with its extensions (allocator._ringpool:
#                       the binding glue and every csrc/*.c it compiles;
#                       allocator._pyhooks, allocator._pystack, audit._bench)
#                       compiled with TSan into build/py-tsan/lib (the recipes of
#                       mk/pyasan.mk), then runs the tests that use threads
#                       on that copy (those marked @pytest.mark.threads), in
#                       .venv's interpreter with libtsan preloaded: the first
#                       report fails the run (docs/python.md, "Sanitizers").
#   PYTSAN_TEST_ARGS    extra pytest arguments (-k, -x, ...)
#   make test-pyhooks-tsan   (in make test-py-tsan) the thread tests of
#                       tests/pyhooks (@pytest.mark.threads) on the same build:
#                       their hooked child interpreters inherit PYTSAN_ENV, as
#                       test-pyhooks-asan's inherit PYASAN_ENV (mk/pyhooks-asan.mk)
#   PYHOOKS_TSAN_ARGS   extra pytest arguments for those

PYTSAN_DIR   := $(BUILD)/py-tsan
PYTSAN_LIB   := $(abspath $(PYTSAN_DIR))/lib
PYTSAN_FLAGS := -fsanitize=thread -fno-omit-frame-pointer -g -O1
PYTSAN_EXT   := $(PYTSAN_DIR)/.ext
PYTSAN_PY    := $(PYTSAN_DIR)/.py
PYTSAN_RT     = $(shell $(CC) -print-file-name=libtsan.so)
PYTSAN_ENV    = PYTHONPATH=$(PYTSAN_LIB) PYTHONSAFEPATH=1 PYTHONMALLOC=malloc \
                LD_PRELOAD="$(PYTSAN_RT)" \
                TSAN_OPTIONS="halt_on_error=1 exitcode=66 second_deadlock_stack=1"
PYTSAN_TESTS := -m threads tests/python
# --capture=sys: a report in the test process reaches the terminal (docs/python.md)
PYTSAN_PYTEST = $(PYTSAN_ENV) $(PY) -m pytest -q -p no:cacheprovider --capture=sys
PYTSAN_TEST_ARGS ?=
PYHOOKS_TSAN_ARGS ?=

.PHONY: test-py-tsan py-tsan test-pyhooks-tsan
# Five runs in a row passed (docs/python.md, "Sanitizers"): in make test.
TEST_TARGETS += test-py-tsan

$(PYTSAN_EXT): $(PYASAN_C_DEPS) | setup-py
	$(call pysan_build,$(PYTSAN_DIR),$(PYTSAN_FLAGS))

$(PYTSAN_PY): $(PYTSAN_EXT) $(PYASAN_PY_DEPS)
	$(call pysan_build_py,$(PYTSAN_DIR))

py-tsan: $(PYTSAN_PY)

test-py-tsan: $(PYTSAN_PY)
	$(call pysan_check,$(PYTSAN_ENV),$(PYTSAN_DIR),test-py-tsan)
	$(PYTSAN_PYTEST) $(PYTSAN_TESTS) $(PYTSAN_TEST_ARGS)

test-py-tsan: test-pyhooks-tsan
test-pyhooks-tsan: $(PYTSAN_PY)
	$(call pysan_check,$(PYTSAN_ENV),$(PYTSAN_DIR),test-pyhooks-tsan)
	$(PYTSAN_PYTEST) -m threads tests/pyhooks $(PYHOOKS_TSAN_ARGS)
