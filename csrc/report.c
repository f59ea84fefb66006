/* report.c -- the JSON report (docs/report-format.md), the $RINGPOOL_REPORT
   pattern, and the reports written for pools still alive at exit/unload. */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Writes s as a JSON string: escapes, and U+FFFD for invalid UTF-8. */
static void put_str(FILE *f, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    fputc('"', f);
    while (*p) {
        unsigned char c = *p;
        if (c == '"' || c == '\\') {
            fputc('\\', f);
            fputc(c, f);
            p++;
        } else if (c < 0x20) {
            fprintf(f, "\\u%04x", c);
            p++;
        } else if (c < 0x80) {
            fputc(c, f);
            p++;
        } else {
            int n = c >= 0xf0 && c <= 0xf4 ? 3 : c >= 0xe0 ? 2 : c >= 0xc2 && c < 0xe0 ? 1 : -1;
            bool ok = n > 0;
            for (int i = 1; ok && i <= n; i++) ok = (p[i] & 0xc0) == 0x80;
            if (ok && n == 2) {
                unsigned cp = ((c & 0x0fu) << 12) | ((p[1] & 0x3fu) << 6) | (p[2] & 0x3fu);
                ok = cp >= 0x800 && (cp < 0xd800 || cp > 0xdfff);
            } else if (ok && n == 3) {
                unsigned cp = ((c & 0x07u) << 18) | ((p[1] & 0x3fu) << 12) | ((p[2] & 0x3fu) << 6);
                ok = cp >= 0x10000 && cp <= 0x10ffff;
            }
            if (ok) {
                fwrite(p, 1, (size_t)n + 1, f);
                p += n + 1;
            } else {
                fputs("\xef\xbf\xbd", f);
                p++;
            }
        }
    }
    fputc('"', f);
}

typedef struct walk_ctx { FILE *f; bool first; } walk_ctx;

/* Body of one pool's report (lock held by the caller). */
static void put_pool(FILE *f, rp_pool *pool, unsigned flags, const char *reason, int depth)
{
    char when[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);

    fputs("\"pool\": ", f);
    put_str(f, pool->name);
    fprintf(f, ", \"pid\": %ld, \"taken_at\": \"%s\", \"reason\": ", (long)getpid(), when);
    put_str(f, reason);
    fprintf(f, ", \"backing\": \"%s\",\n", pool->arena ? "arena" : "malloc");
    uint64_t allocs;
    size_t blocks = rpi_pool_totals(pool, &allocs);
    fprintf(f, "  \"totals\": {\"blocks\": %zu, \"bytes\": %zu, \"peak_bytes\": %zu, "
               "\"allocs\": %llu, \"reserved_bytes\": %zu},\n",
            blocks, pool->bytes, pool->peak, (unsigned long long)allocs,
            pool->arena ? pool->reserved : pool->bytes + blocks * RPI_HDR + pool->reserved);
    fputs("  \"tags\": [", f);
    for (rpi_tag *t = pool->tag_first; t; t = t->lnext) {
        fputs(t == pool->tag_first ? "\n    {\"tag\": " : ",\n    {\"tag\": ", f);
        put_str(f, t->name);
        fprintf(f, ", \"blocks\": %zu, \"bytes\": %zu, \"peak_bytes\": %zu, \"allocs\": %llu}",
                t->blocks, t->bytes, t->peak, (unsigned long long)t->allocs);
    }
    fputs(pool->tag_first ? "\n  ]" : "]", f);
    if (flags & RP_REPORT_BLOCKS) {
        fputs(",\n  \"blocks\": [", f);
        bool first = true;
        for (rpi_hdr *h = pool->ring.next; h != &pool->ring; h = h->next) {
            fprintf(f, "%s\n    {\"address\": \"%p\", \"size\": %zu, \"tag\": ",
                    first ? "" : ",", rpi_payload(h), rpi_size(h));
            put_str(f, h->origin->name);
            fputc('}', f);
            first = false;
        }
        fputs(first ? "]" : "\n  ]", f);
    }
    if ((flags & RP_REPORT_CHILDREN) && pool->first_child) {
        fputs(",\n  \"children\": [", f);
        for (rp_pool *c = pool->first_child; c; c = c->next_sibling) {
            fputs(c == pool->first_child ? "\n  {" : ",\n  {", f);
            rpi_pool_lock(c);
            put_pool(f, c, flags, reason, depth + 1);
            rpi_pool_unlock(c);
            fputc('}', f);
        }
        fputs("\n  ]", f);
    }
}

int rpi_write_report(rp_pool *pool, const char *path, unsigned flags, const char *reason)
{
    if (!pool || !path || !*path) return RP_EINVAL;
    bool to_stdout = strcmp(path, "-") == 0;
    char tmp[4096];
    FILE *f;
    if (to_stdout) {
        f = stdout;
    } else {
        int n = snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
        if (n < 0 || (size_t)n >= sizeof tmp) return RP_EIO;
        f = fopen(tmp, "w");
        if (!f) return RP_EIO;
    }
    rpi_pool_lock(pool);
    fputs("{\"format\": \"ringpool-snapshot\", \"version\": 1,\n  ", f);
    put_pool(f, pool, flags, reason, 0);
    fputs("\n}\n", f);
    rpi_pool_unlock(pool);
    if (to_stdout) return fflush(f) == 0 ? 0 : RP_EIO;
    int err = ferror(f);
    if (fclose(f) != 0 || err) {
        unlink(tmp);
        return RP_EIO;
    }
    if (rename(tmp, path) != 0) {
        unlink(tmp);
        return RP_EIO;
    }
    return 0;
}

static unsigned env_flags(void)
{
    const char *b = getenv("RINGPOOL_REPORT_BLOCKS");
    return b && strcmp(b, "1") == 0 ? RP_REPORT_BLOCKS : 0;
}

int rp_pool_write_report(rp_pool *pool, const char *path)
{
    return rpi_write_report(pool, path, env_flags() | RP_REPORT_CHILDREN, "request");
}

int rp_pool_write_report_ex(rp_pool *pool, const char *path, unsigned report_flags)
{
    return rpi_write_report(pool, path, report_flags, "request");
}

/* Expands %p, %n, %% of pattern into out; false if it does not fit. */
static bool expand(const char *pattern, const char *name, char *out, size_t cap)
{
    size_t o = 0;
    char num[32];
    for (const char *p = pattern; *p; p++) {
        const char *add = NULL;
        char one[2] = {0, 0};
        if (*p == '%' && p[1] == 'p') {
            snprintf(num, sizeof num, "%ld", (long)getpid());
            add = num;
            p++;
        } else if (*p == '%' && p[1] == 'n') {
            for (const char *s = name; *s; s++) {
                char c = *s;
                bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                          (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
                if (o + 1 >= cap) return false;
                out[o++] = ok ? c : '_';
            }
            p++;
            continue;
        } else if (*p == '%' && p[1] == '%') {
            one[0] = '%';
            add = one;
            p++;
        } else {
            one[0] = *p;
            add = one;
        }
        size_t l = strlen(add);
        if (o + l >= cap) return false;
        memcpy(out + o, add, l);
        o += l;
    }
    out[o] = '\0';
    return true;
}

int rpi_report_from_env(rp_pool *pool, const char *reason)
{
    const char *pattern = getenv("RINGPOOL_REPORT");
    if (!pattern || !*pattern) return 0;
    char path[4096];
    int saved = errno;
    int rc;
    if (!expand(pattern, pool->name, path, sizeof path)) {
        rc = RP_EIO;
        fprintf(stderr, "ringpool: RINGPOOL_REPORT='%s' expands to a path longer than %zu bytes\n",
                pattern, sizeof path - 1);
    } else if ((rc = rpi_write_report(pool, path, env_flags(), reason)) != 0) {
        fprintf(stderr, "ringpool: could not write the report of pool '%s' to '%s': %s\n",
                pool->name, path, rp_strerror(rc));
    }
    errno = saved;
    return rc;
}

int rp_report_live_pools(void)
{
    const char *pattern = getenv("RINGPOOL_REPORT");
    if (!pattern || !*pattern) return 0;
    int n = 0;
    rpi_live_lock();
    for (rp_pool *p = rpi_live_head; p; p = p->live_next)
        if (rpi_report_from_env(p, "exit") == 0) n++;
    rpi_live_unlock();
    return n;
}

/* At process exit and at dlclose: report what is still alive, then release
   the checked-mode registry and the chunk cache, so an unloaded library
   leaves nothing behind. */
__attribute__((destructor)) static void rpi_at_unload(void)
{
    rp_report_live_pools();
    rpi_registry_fini();
    rpi_chunk_cache_fini();
}
