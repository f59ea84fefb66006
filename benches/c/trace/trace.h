/*
 * trace.h -- the allocation trace format written by rptrace.so (the
 * recorder, rptrace.c) and read by replay (benches/c/replay.c).
 *
 * A trace is the magic "RPTRACE1" (8 bytes) followed by records, one per
 * heap call that succeeded, in the order the calls returned:
 *
 *   op byte | id (LEB128) | size (LEB128, not for FREE) | log2(align) byte (ALIGNED only)
 *
 *   MALLOC   a new object `id` of `size` bytes            (malloc)
 *   CALLOC   a new zeroed object `id` of `size` bytes     (calloc: n * m)
 *   REALLOC  object `id` now has `size` bytes, maybe moved (realloc, reallocarray)
 *   FREE     object `id` is gone                          (free, realloc to 0)
 *   ALIGNED  a new object `id` of `size` bytes aligned to 2^k
 *            (posix_memalign, aligned_alloc, memalign, valloc)
 *
 * Objects are named by small integers instead of addresses: the recorder
 * hands out the lowest-numbered ids first and reuses an id once its object is
 * freed, so the largest id is about the largest number of live objects and a
 * replay maps ids to pointers with a plain array. realloc(NULL, n) is
 * recorded as MALLOC, free(NULL) not at all, a failed call not at all.
 */
#ifndef RPTRACE_TRACE_H
#define RPTRACE_TRACE_H

#define RPTRACE_MAGIC "RPTRACE1"
#define RPTRACE_MAGIC_LEN 8

enum rptrace_op {
    RPTRACE_MALLOC = 1,
    RPTRACE_CALLOC = 2,
    RPTRACE_REALLOC = 3,
    RPTRACE_FREE = 4,
    RPTRACE_ALIGNED = 5
};

#endif
