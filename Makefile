# ringpool -- top-level build. `make demo` and `make test` set up everything.
# Each part adds its rules in mk/*.mk and appends its test targets to TEST_TARGETS.
#   make lib        build/libringpool.so (SONAME libringpool.so.0), .a, ringpool.pc
#   make install    PREFIX=/usr/local (DESTDIR for staging); make uninstall removes it
#   make demo       Debian build packages + runtime Python requirements, then the demo
#   make test       everything (Debian packages, dev requirements), then every suite

SHELL := /bin/bash
BUILD  ?= build
PREFIX ?= /usr/local
CC     ?= gcc
LD     ?= ld
OBJCOPY ?= objcopy
PYTHON_SYS ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMPS := $(BUILD)/.stamps

# The flags of the native libraries live in csrc/flags.mk (setup.py reads them too).
include csrc/flags.mk
# The version lives in one place: the RINGPOOL_VERSION_* macros of the public header.
VERSION := $(shell sed -n 's/^[#]define RINGPOOL_VERSION_\(MAJOR\|MINOR\|PATCH\) \([0-9]*\)$$/\2/p' \
                       csrc/include/ringpool.h | paste -sd.)

WARN    := $(RP_WARN)
CPPFLAGS_LIB := -D_GNU_SOURCE -DRP_BUILDING -Icsrc/include -Icsrc
OPT     ?= $(RP_OPT)
CFLAGS_LIB := $(WARN) $(OPT) $(RP_LIB_CFLAGS)

SOVERSION := 0
LIB_SRCS  := $(sort $(wildcard csrc/*.c))
LIB_OBJS  := $(patsubst csrc/%.c,$(BUILD)/obj/%.o,$(LIB_SRCS))
LIB_SO    := $(BUILD)/libringpool.so
LIB_A     := $(BUILD)/libringpool.a
LIB_REL   := $(BUILD)/obj/ringpool-all.o
LIB_PC    := $(BUILD)/ringpool.pc

TEST_TARGETS :=

.PHONY: all lib test demo install uninstall setup setup-sys setup-sys-build setup-py setup-run \
        sys-packages clean bench bench-peers
all: lib

lib: $(LIB_SO) $(LIB_A) $(LIB_PC)

$(BUILD)/obj/%.o: csrc/%.c $(wildcard csrc/*.h) csrc/include/ringpool.h csrc/flags.mk
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_LIB) -c $< -o $@

$(LIB_SO): $(LIB_OBJS)
	$(CC) -shared -Wl,-soname,libringpool.so.$(SOVERSION) -o $@.$(SOVERSION) $^ $(RP_LIB_LIBS)
	ln -sf libringpool.so.$(SOVERSION) $@

# The static library is one relocatable object whose hidden symbols (the rpi_
# internals) are made local, so they never meet the program's own names at link
# time; only the rp_ API stays global.
# Its pool.o is compiled for linking into a program (RPI_STATIC_LIB): each
# thread remembers its shard of a shared pool in thread-local storage, which a
# program reaches at a constant offset through a TLS descriptor (csrc/pool.c,
# "the calling thread's last shard"); the shared library reaches it in the
# initial-exec model (an offset from the GOT; its thread-local data stays a
# few words: test-shared-dlopen).
# (in pool.o's place: csrc/poolstack.c knows the library's code by the order of its objects)
LIB_REL_OBJS := $(patsubst $(BUILD)/obj/pool.o,$(BUILD)/obj/pool-static.o,$(LIB_OBJS))
$(BUILD)/obj/pool-static.o: csrc/pool.c $(wildcard csrc/*.h) csrc/include/ringpool.h csrc/flags.mk
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_LIB) -DRPI_STATIC_LIB -c $< -o $@

$(LIB_REL): $(LIB_REL_OBJS)
	$(LD) -r -o $@ $^
	$(OBJCOPY) --localize-hidden $@

$(LIB_A): $(LIB_REL)
	rm -f $@ && $(AR) rcs $@ $^

# PREFIX and DESTDIR are paths taken as written, whatever they hold (spaces, quotes, '$',
# '|', '&', non-ASCII): given on the command line or in the environment, their value is
# not expanded again by make ('$x' stays '$x'), and the recipes read them from the
# environment (RP_PREFIX, RP_DEST), never through the shell's parsing of a command line.
rp_literal = $(if $(filter command environment,$(firstword $(origin $(1)))),$(value $(1)),$($(1)))
$(LIB_PC) install uninstall: export RP_PREFIX := $(call rp_literal,PREFIX)
install uninstall: export RP_DEST := $(call rp_literal,DESTDIR)$(call rp_literal,PREFIX)

# $(call ringpool_pc,EXTRA_LIBS): ringpool.pc for the prefix $RP_PREFIX on stdout. The
# prefix is escaped as pkg-config reads a value: a backslash before a space, a quote, '$'
# and each other character a shell would split at or expand, so that pkg-config's output
# used in a Makefile or through eval names the prefix (-I/My\ Projects/include).
ringpool_pc = { printf 'prefix=%s\n' "$$(printf '%s' "$$RP_PREFIX" | \
                  sed -e 's/[][ 	!"\#$$&'\''()*;<>?\\^`{|}~]/\\&/g')"; \
                sed -e '/^prefix=@PREFIX@$$/d' -e 's|@VERSION@|$(VERSION)|g' -e 's|@RPATH@|$(1)|g' ringpool.pc.in; }

$(LIB_PC): ringpool.pc.in csrc/include/ringpool.h
	@mkdir -p $(@D)
	$(call ringpool_pc,) > $@

# ---- install / uninstall: a C user's whole kit under PREFIX (DESTDIR stages it).
PRELOAD_SO ?= $(BUILD)/libringpool-preload.so
DOCS       := README.md LICENSE $(sort $(wildcard docs/*.md))
# Every file `make install` writes, relative to PREFIX: `make uninstall` removes these.
INSTALLED  := include/ringpool.h lib/libringpool.so.$(SOVERSION) lib/libringpool.so lib/libringpool.a \
              lib/ringpool/libringpool-preload.so lib/pkgconfig/ringpool.pc \
              lib/cmake/ringpool/ringpoolConfig.cmake lib/cmake/ringpool/ringpoolConfigVersion.cmake \
              $(addprefix share/doc/ringpool/,$(notdir $(DOCS)))
# Directories that belong to ringpool alone: removed by uninstall when empty.
INSTALLED_DIRS := lib/ringpool lib/cmake/ringpool share/doc/ringpool

install: lib $(PRELOAD_SO)
	@printf 'installing ringpool $(VERSION) into %s\n' "$$RP_DEST"
	install -d -- "$$RP_DEST/include" "$$RP_DEST/lib/pkgconfig" "$$RP_DEST/lib/ringpool" \
	    "$$RP_DEST/lib/cmake/ringpool" "$$RP_DEST/share/doc/ringpool"
	install -m 644 -- csrc/include/ringpool.h "$$RP_DEST/include/"
	install -m 755 -- $(LIB_SO).$(SOVERSION) "$$RP_DEST/lib/"
	ln -sf -- libringpool.so.$(SOVERSION) "$$RP_DEST/lib/libringpool.so"
	install -m 644 -- $(LIB_A) "$$RP_DEST/lib/"
	install -m 755 -- $(PRELOAD_SO) "$$RP_DEST/lib/ringpool/"
	$(call ringpool_pc,) > "$$RP_DEST/lib/pkgconfig/ringpool.pc"
	sed -e 's|@VERSION@|$(VERSION)|g' -e 's|@SOVERSION@|$(SOVERSION)|g' cmake/ringpoolConfig.cmake.in \
	    > "$$RP_DEST/lib/cmake/ringpool/ringpoolConfig.cmake"
	sed -e 's|@VERSION@|$(VERSION)|g' cmake/ringpoolConfigVersion.cmake.in \
	    > "$$RP_DEST/lib/cmake/ringpool/ringpoolConfigVersion.cmake"
	install -m 644 -- $(DOCS) "$$RP_DEST/share/doc/ringpool/"

uninstall:
	@printf 'removing ringpool from %s\n' "$$RP_DEST"
	for f in $(INSTALLED); do rm -f -- "$$RP_DEST/$$f" || exit 1; done
	-@for d in $(INSTALLED_DIRS); do [ ! -d "$$RP_DEST/$$d" ] || rmdir --ignore-fail-on-non-empty -- "$$RP_DEST/$$d"; done

# ---- setup: system packages (Debian) and the Python environment, pinned.
# $(call apt_install,PACKAGES): installs those dpkg does not report installed.
define apt_install
@missing=""; for p in $(1); do \
  dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed$$' || missing="$$missing $$p"; \
done; \
if [ -n "$$missing" ]; then \
  sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
  echo "installing Debian packages (apt-get):$$missing"; \
  $$sudo apt-get update -qq -o DPkg::Lock::Timeout=900 && \
  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq -o DPkg::Lock::Timeout=900 $$missing; \
fi
endef

# What building the library and the Python package needs (make demo) ...
# (libunwind-dev: the interposer unwinds stacks with libunwind.)
SYS_PACKAGES_BUILD := gcc make binutils pkg-config python3-venv python3-dev libunwind-dev
# ... and what the test suites add (make test).
SYS_PACKAGES := $(SYS_PACKAGES_BUILD) valgrind libc6-dbg cmake meson ninja-build
setup-sys-build: $(STAMPS)/sys-build
$(STAMPS)/sys-build:
	$(call apt_install,$(SYS_PACKAGES_BUILD))
	@mkdir -p $(@D) && touch $@
setup-sys: $(STAMPS)/sys
$(STAMPS)/sys:
	$(call apt_install,$(SYS_PACKAGES))
	@mkdir -p $(@D) && touch $(STAMPS)/sys-build $@

# The editable install builds the extensions and the native libraries (setup.py).
PY_INSTALL_DEPS := pyproject.toml setup.py csrc/flags.mk ringpool.pc.in \
                   $(wildcard allocator/*.py allocator/*.h allocator/*.c audit/_bench_build.py audit/*.c audit/*.h) \
                   $(LIB_SRCS) $(wildcard csrc/*.h csrc/include/*.h csrc/preload/*.c csrc/preload/*.h csrc/stack/*.c csrc/stack/*.h)
PIP := $(PY) -m pip install -q --disable-pip-version-check

# setup-run: what `make demo` needs (the runtime requirements, pinned).
setup-run: $(STAMPS)/py-run
$(STAMPS)/py-run: requirements.txt $(PY_INSTALL_DEPS) | setup-sys-build
	@mkdir -p $(@D)
	@[ -x $(PY) ] || { echo "creating the virtual environment $(VENV)"; $(PYTHON_SYS) -m venv $(VENV); }
	@echo "installing the pinned runtime requirements (requirements.txt) into $(VENV)"
	$(PIP) -r requirements.txt
	@echo "building ringpool into $(VENV) (pip install -e .: cffi extensions, libringpool.so, the interposer)"
	$(PIP) --no-build-isolation -e .
	@touch $@

# setup-py: what `make test` needs (adds the test and benchmark tools, pinned).
setup-py: $(STAMPS)/py
$(STAMPS)/py: requirements-dev.txt $(STAMPS)/py-run
	@echo "installing the pinned development requirements (requirements-dev.txt) into $(VENV)"
	$(PIP) -r requirements-dev.txt
	@touch $@

setup: setup-sys setup-py

# Every list of Debian packages the targets install (mk/*.mk add theirs).
sys-packages:
	@$(foreach v,$(sort $(filter %PACKAGES %PACKAGES_BUILD,$(.VARIABLES))),echo "$(v): $(sort $($(v)))";)

clean:
	rm -rf $(BUILD) dist *.egg-info allocator/_ringpool*.so allocator/_ringpool.c audit/_bench*.so allocator/include allocator/lib

-include $(sort $(wildcard mk/*.mk))

test: $(TEST_TARGETS)
	@echo "make test: all suites passed ($(TEST_TARGETS))"
