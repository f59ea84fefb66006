/* first_walk_walker.c -- csrc/stack/ built as allocator/_pystack.c builds
   it (the walker without munmap hooks, its buffers from mmap), for
   first_walk.c: a unit of its own, since unwind.c's names (splice, REG_RBP)
   are also names of <fcntl.h> and <signal.h>. */
#define RPI_STACK_TLS
#define RPI_STACK_NO_LIBUNWIND
#define RPI_STACK_NO_MAP_HOOKS
#include "stack.c"
#include "unwind.c"
