/* demo_workload.h -- the bundled workload of `ringpool-audit demo`.
 *
 * A toy request server: a "server" pool holds its configuration, routes and a
 * log; a child pool "requests" holds per-request buffers and sessions. Two
 * deliberate leaks: one session in 25 is never closed, and cache entries are
 * never evicted. Shutdown frees what the code owns and destroys the pool, so
 * the report written at destroy shows exactly the two leaking tags. */
#ifndef RINGPOOL_DEMO_WORKLOAD_H
#define RINGPOOL_DEMO_WORKLOAD_H

typedef struct rpd_server rpd_server;

/* NULL on out of memory. */
rpd_server *rpd_start(void);
/* Handles n more requests; returns the total handled, or -1 on out of memory. */
long rpd_serve(rpd_server *s, long n);
/* Writes the server pool's report (children nested) to path; 0 or an rp_error. */
int rpd_snapshot(rpd_server *s, const char *path);
/* Frees config, routes, log and open buffers, then destroys the pool (which
   writes $RINGPOOL_REPORT when set). NULL is a no-op. */
void rpd_shutdown(rpd_server *s);

#endif
