# ringpool -- top-level build. `make demo` and `make test` set up everything.
# Each part adds its rules in mk/*.mk and appends its test targets to TEST_TARGETS.

SHELL := /bin/bash
BUILD  ?= build
PREFIX ?= /usr/local
CC     ?= gcc
PYTHON_SYS ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMPS := $(BUILD)/.stamps

WARN    := -std=c11 -Wall -Wextra -Werror
CPPFLAGS_LIB := -D_GNU_SOURCE -DRP_BUILDING -Icsrc/include -Icsrc
OPT     ?= -O2 -g
CFLAGS_LIB := $(WARN) $(OPT) -fPIC -fvisibility=hidden $(CPPFLAGS_LIB)

SOVERSION := 0
LIB_SRCS  := $(sort $(wildcard csrc/*.c))
LIB_OBJS  := $(patsubst csrc/%.c,$(BUILD)/obj/%.o,$(LIB_SRCS))
LIB_SO    := $(BUILD)/libringpool.so
LIB_A     := $(BUILD)/libringpool.a
LIB_PC    := $(BUILD)/ringpool.pc

TEST_TARGETS :=

.PHONY: all lib test demo install setup setup-sys setup-py clean bench bench-peers
all: lib

lib: $(LIB_SO) $(LIB_A) $(LIB_PC)

$(BUILD)/obj/%.o: csrc/%.c $(wildcard csrc/*.h) csrc/include/ringpool.h
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_LIB) -c $< -o $@

$(LIB_SO): $(LIB_OBJS)
	$(CC) -shared -Wl,-soname,libringpool.so.$(SOVERSION) -o $@.$(SOVERSION) $^ -lpthread
	ln -sf libringpool.so.$(SOVERSION) $@

$(LIB_A): $(LIB_OBJS)
	rm -f $@ && ar rcs $@ $^

$(LIB_PC): ringpool.pc.in
	@mkdir -p $(@D)
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|0.1.0|g' $< > $@

install: lib
	install -d $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 644 csrc/include/ringpool.h $(DESTDIR)$(PREFIX)/include/
	install -m 755 $(LIB_SO).$(SOVERSION) $(DESTDIR)$(PREFIX)/lib/
	ln -sf libringpool.so.$(SOVERSION) $(DESTDIR)$(PREFIX)/lib/libringpool.so
	install -m 644 $(LIB_A) $(DESTDIR)$(PREFIX)/lib/
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|0.1.0|g' ringpool.pc.in \
	    > $(DESTDIR)$(PREFIX)/lib/pkgconfig/ringpool.pc

# ---- setup: system packages (Debian) and the Python environment, pinned.
SYS_PACKAGES := valgrind pkg-config binutils gcc make libc6-dbg
setup-sys: $(STAMPS)/sys
$(STAMPS)/sys:
	@mkdir -p $(@D)
	@missing=""; for p in $(SYS_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
	@touch $@

setup-py: $(STAMPS)/py
$(STAMPS)/py: requirements-dev.txt pyproject.toml setup.py $(wildcard allocator/*.py allocator/*.h) \
             $(wildcard audit/_bench_build.py audit/*.c audit/*.h) $(LIB_SRCS) $(wildcard csrc/*.h)
	@mkdir -p $(@D)
	[ -x $(PY) ] || $(PYTHON_SYS) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-build-isolation -e .
	@touch $@

setup: setup-sys setup-py

clean:
	rm -rf $(BUILD) *.egg-info allocator/_ringpool*.so allocator/_ringpool.c

-include $(sort $(wildcard mk/*.mk))

test: $(TEST_TARGETS)
	@echo "make test: all suites passed ($(TEST_TARGETS))"
