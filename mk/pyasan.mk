# mk/pyasan.mk -- the Python bindings under AddressSanitizer and UBSan.
#   make test-py-asan   builds the package with its extensions (allocator._ringpool:
#                       the binding glue and every csrc/*.c it compiles;
#                       allocator._pyhooks, allocator._pystack, audit._bench)
#                       compiled with ASan+UBSan into build/py-asan/lib
#                       (`setup.py build` without the native libraries; .venv and
#                       its editable install are not touched), then runs
#                       tests/python and the audit tests that drive the bindings
#                       on that copy, in .venv's interpreter with the sanitizer
#                       runtimes preloaded: the first report aborts the process
#                       (docs/python.md, "Sanitizers").
#   PYASAN_TEST_ARGS    extra pytest arguments (-k, -x, ...)
#   RINGPOOL_REENTRANCY_SEEDS=601-1500   more seeds of tests/python/test_reentrancy_fuzz.py

PYASAN_DIR   := $(BUILD)/py-asan
PYASAN_LIB   := $(abspath $(PYASAN_DIR))/lib
# -g -O1: exact stacks in the reports. Python's own CFLAGS (-DNDEBUG -O3) are
# replaced by these, so the library's assert()s are on as well.
PYASAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer \
                -fno-sanitize-recover=undefined -g -O1
PYASAN_EXT   := $(PYASAN_DIR)/.ext
PYASAN_PY    := $(PYASAN_DIR)/.py
# What the compiled part is made of: any change rebuilds it from scratch
# (setuptools would not notice a changed header).
PYASAN_C_DEPS := setup.py csrc/flags.mk allocator/_build.py audit/_bench_build.py \
                 $(wildcard allocator/*.h allocator/*.c audit/*.c audit/*.h) \
                 $(LIB_SRCS) $(wildcard csrc/*.h csrc/include/*.h csrc/preload/*.c \
                 csrc/preload/*.h csrc/stack/*.c csrc/stack/*.h)
PYASAN_PY_DEPS := $(wildcard allocator/*.py allocator/*.pyi audit/*.py audit/*/*.py audit/*.json \
                  audit/*/*.json)
# The package the tests import is build/py-asan/lib's: PYTHONPATH puts it
# before the editable install's finder, and PYTHONSAFEPATH keeps the current
# directory (the project root, which holds the uninstrumented allocator/) off
# sys.path, in the test processes and in every Python child they start.
# PYTHONMALLOC=malloc: Python objects come from malloc too, so a reference the
# glue drops too early, or a buffer it overruns, is reported as well.
# detect_leaks=0: CPython does not free everything at exit.
PYASAN_RT     = $(shell $(CC) -print-file-name=libasan.so) $(shell $(CC) -print-file-name=libubsan.so)
PYASAN_ENV    = PYTHONPATH=$(PYASAN_LIB) PYTHONSAFEPATH=1 PYTHONMALLOC=malloc \
                LD_PRELOAD="$(PYASAN_RT)" RINGPOOL_PY_ASAN=$(PYASAN_LIB) \
                ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
                UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# The audit tests that go through the bindings (Pool, Snapshot, the plugin's
# fixtures); the rest run C programs and the interposer, checked by
# test-c-asan and test-preload.
PYASAN_AUDIT := tests/audit/test_plugin.py tests/audit/test_schema.py \
                tests/audit/test_pool_paths.py::test_plugin_names_each_pool_by_its_path \
                tests/audit/test_pool_paths.py::test_python_snapshot_of_a_child_pool_names_its_parents \
                tests/audit/test_run.py::test_python_program_using_allocator
PYASAN_TEST_ARGS ?=

.PHONY: test-py-asan py-asan
TEST_TARGETS += test-py-asan

# The sanitized builds of the package (this file's and mk/pytsan.mk's) share
# these recipes; the DIR/.ext stamp depends on PYASAN_C_DEPS, DIR/.py on
# DIR/.ext and PYASAN_PY_DEPS.
# $(call pysan_build,DIR,FLAGS): the package, its extensions compiled and
# linked with FLAGS, built from scratch into DIR/lib (its log: DIR/build.log).
define pysan_build
rm -rf $(1)
@mkdir -p $(1)
CFLAGS="$(2)" LDFLAGS="$(2)" RINGPOOL_NATIVE=0 $(PY) setup.py -q build \
    --build-base $(1)/tmp --build-lib $(abspath $(1))/lib > $(1)/build.log 2>&1 \
    || { tail -40 $(1)/build.log; exit 1; }
@touch $(1)/.ext
endef
# $(call pysan_build_py,DIR): the Python files alone copied into DIR/lib (the
# extensions stay).
define pysan_build_py
$(PY) setup.py -q build_py --build-lib $(abspath $(1))/lib > /dev/null
@touch $(1)/.py
endef
# $(call pysan_check,ENV,DIR,TARGET): ENV's interpreter, run outside the
# project root, imports the extensions of DIR/lib (the four of them), not the
# editable install's.
define pysan_check
@cd /tmp && $(1) $(abspath $(PY)) -c 'import sys, allocator._ringpool as r, audit._bench as b; \
    import allocator._pyhooks as h, allocator._pystack as s; \
    assert all(m.__file__.startswith(sys.argv[1] + "/") for m in (r, b, h, s)), (r, b, h, s); \
    print(sys.argv[2] + ":", r.__file__)' $(abspath $(2))/lib $(3)
endef

$(PYASAN_EXT): $(PYASAN_C_DEPS) | setup-py
	$(call pysan_build,$(PYASAN_DIR),$(PYASAN_FLAGS))

# Python files alone changed: copy them (the extensions stay).
$(PYASAN_PY): $(PYASAN_EXT) $(PYASAN_PY_DEPS)
	$(call pysan_build_py,$(PYASAN_DIR))

py-asan: $(PYASAN_PY)

test-py-asan: $(PYASAN_PY)
	$(call pysan_check,$(PYASAN_ENV),$(PYASAN_DIR),test-py-asan)
	$(PYASAN_ENV) $(PY) -m pytest -q -p no:cacheprovider tests/python $(PYASAN_TEST_ARGS)
	$(PYASAN_ENV) RINGPOOL_LIB_A=$(abspath $(LIB_A)) $(PY) -m pytest -q -p no:cacheprovider \
	    $(PYASAN_AUDIT) $(PYASAN_TEST_ARGS)
