# mk/install.mk -- the installed product, checked from outside the repository.
#   make dist               build/dist/: the sdist, and the wheel built from it (python -m build)
#   make test-install       dist, then tests/install/check_installed.sh: the wheel in a fresh
#                           venv in a temporary directory (CLI, demo, C program built with the
#                           bundled header and library, run --preload, a pytest project), and
#                           the sdist installed once
#   make test-make-install  make install into a temporary prefix: exact file list, SONAME,
#                           the .a's hidden internals, CMake and Meson consumers, make uninstall
DIST_DIR := $(BUILD)/dist

.PHONY: dist test-install test-make-install
TEST_TARGETS += test-install test-make-install

dist: setup-py
	@echo "building the sdist, then the wheel from it, into $(DIST_DIR) (python -m build)"
	rm -rf $(DIST_DIR)
	$(PY) -m build --no-isolation --outdir $(DIST_DIR) . > $(BUILD)/dist.log 2>&1 || \
	  { tail -n 40 $(BUILD)/dist.log; exit 1; }
	@ls $(DIST_DIR)

test-install: setup-sys dist
	PYTHON_SYS=$(PYTHON_SYS) CC=$(CC) VERSION=$(VERSION) tests/install/check_installed.sh $(DIST_DIR)

test-make-install: setup-sys lib preload
	MAKE="$(MAKE)" BUILD=$(BUILD) CC=$(CC) VERSION=$(VERSION) tests/install/check_make_install.sh
