/* _demo_workload.c -- see demo_workload.h. */
#include "demo_workload.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ringpool.h"

#define ROUTES 12
#define LOG_KEEP 64

struct rpd_server {
    rp_pool *pool;       /* "server" */
    rp_pool *requests;   /* child "requests" */
    char *config;
    char *routes[ROUTES];
    char *log[LOG_KEEP]; /* ring of the last log lines */
    long handled;
};

rpd_server *rpd_start(void)
{
    rpd_server *s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    s->pool = rp_pool_create("server");
    if (s->pool == NULL)
        goto fail;
    s->requests = rp_pool_create_child(s->pool, "requests");
    s->config = rp_alloc_noexc(s->pool, 4096, "config");
    if (s->requests == NULL || s->config == NULL)
        goto fail;
    memset(s->config, 0, 4096);
    for (int i = 0; i < ROUTES; i++) {
        char name[32];
        snprintf(name, sizeof name, "/api/v1/route/%d", i);
        s->routes[i] = rp_strdup_noexc(s->pool, name, "routes");
        if (s->routes[i] == NULL)
            goto fail;
    }
    return s;
fail:
    rp_pool_destroy(s->pool);
    free(s);
    return NULL;
}

static int log_line(rpd_server *s, long request)
{
    char text[80];
    snprintf(text, sizeof text, "request %ld served", request);
    char *line = rp_strdup_noexc(s->pool, text, "log-line");
    if (line == NULL)
        return -1;
    size_t slot = (size_t)(request % LOG_KEEP);
    rp_free(s->log[slot]); /* NULL is a no-op */
    s->log[slot] = line;
    return 0;
}

long rpd_serve(rpd_server *s, long n)
{
    for (long i = 0; i < n; i++) {
        long r = s->handled + 1;
        size_t size = 512 + (size_t)(r % 7) * 256;
        char *buffer = rp_alloc_noexc(s->requests, size, "request-buffer");
        char *session = rp_alloc_noexc(s->requests, 96, "session");
        if (buffer == NULL || session == NULL)
            return -1;
        memset(buffer, 'x', size);
        memset(session, 0, 96);
        if (r % 10 == 0) { /* a cache miss: the entry is kept forever (leak 2) */
            char *entry = rp_alloc_noexc(s->pool, 200 + (size_t)(r % 3) * 100, "cache-entry");
            if (entry == NULL)
                return -1;
            memset(entry, 0, 200);
        }
        if (log_line(s, r) != 0)
            return -1;
        rp_free(buffer);
        if (r % 25 != 0) /* one session in 25 is never closed (leak 1) */
            rp_free(session);
        s->handled = r;
    }
    return s->handled;
}

int rpd_snapshot(rpd_server *s, const char *path)
{
    return rp_pool_write_report_ex(s->pool, path, RP_REPORT_CHILDREN);
}

void rpd_shutdown(rpd_server *s)
{
    if (s == NULL)
        return;
    rp_free(s->config);
    for (int i = 0; i < ROUTES; i++)
        rp_free(s->routes[i]);
    for (int i = 0; i < LOG_KEEP; i++)
        rp_free(s->log[i]);
    rp_pool_destroy(s->pool); /* children first; the report shows the leaks */
    free(s);
}
