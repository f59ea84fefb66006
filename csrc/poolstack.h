/*
 * poolstack.h -- pools that record an allocation stack per block
 * (RP_POOL_STACKS, $RINGPOOL_POOL_STACKS), see docs/contract.md.
 *
 * A stack pool takes the general allocation and free paths (pool.c routes
 * it there with the flag tests it already makes), so pools without stacks
 * run exactly the code they ran before. Each block of a stack pool carries
 * RPI_F_STACK in its header word; its stack lives in a side table of the
 * pool (payload -> record), so the header does not grow. A record counts the
 * blocks of one (tag, stack) pair: reports list, per tag, the stacks that
 * reached it with their blocks, bytes and allocations. Stacks themselves are
 * interned once per process in the table of csrc/stack/ (ids, never moved).
 *
 * Locking: capture runs before the pool lock is taken; everything else runs
 * under the pool lock (and the registry lock for checked pools).
 */
#ifndef RP_POOLSTACK_H
#define RP_POOLSTACK_H

#include "internal.h"

#define RPI_F_STACK (UINT64_C(1) << 50)   /* its stack is in pool->stacks */

typedef struct rpi_srec rpi_srec;

/* pool_new: whether the pool records stacks (its RP_POOL_STACKS flag and
   options, its parent's, $RINGPOOL_POOL_STACKS); sets pool->stacks and the
   flag. 0, or RP_ENOMEM (nothing to undo). */
RPI_HIDDEN int rpi_poolstack_setup(rp_pool *pool, const rp_pool_options *opts, rp_pool *parent);
/* The caller's stack, for a block about to be allocated (no lock held). */
RPI_HIDDEN uint32_t rpi_poolstack_capture(rp_pool *pool);
/* Lock held: the record of (t, id) with room to link one block, or NULL on
   OOM (nothing changed that matters: an unused record is never listed). */
RPI_HIDDEN rpi_srec *rpi_poolstack_prepare(rp_pool *pool, rpi_tag *t, uint32_t id);
/* Lock held: h (linked, counted) now belongs to rec. */
RPI_HIDDEN void rpi_poolstack_link(rp_pool *pool, rpi_hdr *h, rpi_srec *rec);
/* Lock held: the block at payload (size bytes) is being freed. */
RPI_HIDDEN void rpi_poolstack_unlink(rp_pool *pool, const void *payload, size_t size);
/* Lock held, before a resize that may move a stack block: room to re-key. */
RPI_HIDDEN int rpi_poolstack_reserve(rp_pool *pool);
/* Lock held, after a successful resize: the block keeps its stack. */
RPI_HIDDEN void rpi_poolstack_resized(rp_pool *pool, const void *old_payload, void *new_payload,
                                      size_t old_size, size_t new_size);
/* Lock held: every block went (destroy, reset); allocation totals kept. */
RPI_HIDDEN void rpi_poolstack_clear(rp_pool *pool);
/* The pool is being freed. */
RPI_HIDDEN void rpi_poolstack_fini(rp_pool *pool);

/* Report writing (docs/report-format.md, "Stacks of pool blocks"), lock
   held throughout: begin (NULL when the pool records no stacks, or on
   OOM: then the report carries none), one call per listed tag in
   first-use order (writes the tag's `, "stacks": [...]`), one per listed
   block of a stack pool (its stack's index), then end (writes
   the pool's tables and frees). */
typedef struct rpi_json_out {
    void *ctx;
    void (*raw)(void *ctx, const char *s, size_t n);
    void (*str)(void *ctx, const char *s);     /* a JSON string */
} rpi_json_out;
typedef struct rpi_psreport rpi_psreport;
RPI_HIDDEN rpi_psreport *rpi_poolstack_report_begin(rp_pool *pool);
RPI_HIDDEN void rpi_poolstack_report_tag(rpi_psreport *r, const rpi_tag *t, const rpi_json_out *o);
/* In the block list (after the tags, before end): `, "stack": INDEX`. */
RPI_HIDDEN void rpi_poolstack_report_block(rpi_psreport *r, const void *payload, const rpi_json_out *o);
RPI_HIDDEN void rpi_poolstack_report_end(rpi_psreport *r, const rpi_json_out *o);

#endif /* RP_POOLSTACK_H */
