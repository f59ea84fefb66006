# Compiler flags of the native libraries, in one place for both builds: the
# Makefile includes this file and setup.py reads it (the wheel's libringpool.so
# and libringpool-preload.so). Keep to plain `NAME := words` lines: setup.py
# parses them without make (source lists are glob patterns, expanded by both).
# setup.py leaves out -Werror, so that a warning a newer compiler adds cannot
# break a user's `pip install`; the Makefile's builds and CI keep it.
RP_WARN            := -std=c11 -Wall -Wextra -Werror
RP_OPT             := -O2 -g
# -fno-semantic-interposition: calls between the library's own public
# functions (rp_stat_alloc -> rp_alloc_noexc) are direct, not through the PLT.
# RPI_INITIAL_EXEC: libringpool.so reaches a thread's record of its shard of
# a shared pool in the initial-exec TLS model (csrc/pool.c, docs/concurrency.md).
RP_LIB_CFLAGS      := -fPIC -fvisibility=hidden -fno-semantic-interposition -D_GNU_SOURCE -DRP_BUILDING -DRPI_INITIAL_EXEC -Icsrc/include -Icsrc
RP_LIB_LIBS        := -lpthread
RP_PRELOAD_SRCS    := csrc/preload/*.c csrc/stack/*.c csrc/outfile.c
RP_PRELOAD_CFLAGS  := -fPIC -ftls-model=initial-exec -fvisibility=hidden -fno-builtin -flto -flto-partition=one -D_GNU_SOURCE -Icsrc/stack
RP_PRELOAD_LDFLAGS := -Wl,-z,nodelete
RP_PRELOAD_LIBS    := -lunwind -ldl -lpthread
