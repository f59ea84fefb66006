/* test_report.c -- JSON reports: $RINGPOOL_REPORT at destroy (%p %n %%,
   read at each destroy), RINGPOOL_REPORT_BLOCKS, explicit reports, escaping,
   at-exit reports of live pools. */
#include <ctype.h>
#include <dirent.h>
#include <sys/stat.h>

#include "testutil.h"

static char tmpdir[256];

static void make_tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/rp-report-XXXXXX", base ? base : "/tmp");
    CHECK(mkdtemp(tmpdir) != NULL);
}

static int count_files(void)
{
    DIR *d = opendir(tmpdir);
    struct dirent *e;
    int n = 0;
    CHECK(d != NULL);
    while ((e = readdir(d)) != NULL)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static void remove_tmpdir(void)
{
    DIR *d = opendir(tmpdir);
    struct dirent *e;
    char path[512];
    CHECK(d != NULL);
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "%s/%s", tmpdir, e->d_name);
        CHECK(unlink(path) == 0);
    }
    closedir(d);
    CHECK(rmdir(tmpdir) == 0);
}

/* ---------------------------------------------- a minimal JSON reader */
/* The value of the first key `key` at or after `from` whose value starts with
   one of `starts` (NULL: any), before `end` (NULL: end of string). */
static const char *jfind(const char *from, const char *end, const char *key,
                         const char *starts)
{
    char pat[128];
    const char *p = from;
    snprintf(pat, sizeof pat, "\"%s\"", key);
    while ((p = strstr(p, pat)) != NULL && (end == NULL || p < end)) {
        const char *v = p + strlen(pat);
        while (isspace((unsigned char)*v))
            v++;
        if (*v == ':') {
            v++;
            while (isspace((unsigned char)*v))
                v++;
            if (starts == NULL || strchr(starts, *v) != NULL)
                return v;
        }
        p += strlen(pat);
    }
    return NULL;
}

static long long jnum(const char *from, const char *end, const char *key)
{
    const char *v = jfind(from, end, key, "-0123456789");
    if (v == NULL)
        tu_fail(__FILE__, __LINE__, "no number field \"%s\"", key);
    return strtoll(v, NULL, 10);
}

/* Copies the string value of key (raw, escapes kept). */
static const char *jstr(const char *from, const char *end, const char *key,
                        char *out, size_t cap)
{
    const char *v = jfind(from, end, key, "\"");
    size_t n = 0;
    if (v == NULL)
        tu_fail(__FILE__, __LINE__, "no string field \"%s\"", key);
    v++;
    while (*v && *v != '"' && n + 1 < cap) {
        if (*v == '\\' && v[1] != '\0')
            out[n++] = *v++;
        out[n++] = *v++;
    }
    out[n] = '\0';
    return out;
}

/* The object of the "tags" entry named tag: [start, end). */
static const char *jtag(const char *doc, const char *tag, const char **end)
{
    const char *tags = jfind(doc, NULL, "tags", "[");
    const char *p = tags;
    char want[160];
    CHECK(tags != NULL);
    snprintf(want, sizeof want, "\"%s\"", tag);
    while ((p = jfind(p, NULL, "tag", "\"")) != NULL) {
        if (strncmp(p, want, strlen(want)) == 0) {
            const char *s = p, *e = strchr(p, '}');
            while (s > tags && *s != '{')
                s--;
            *end = e;
            return s;
        }
        p++;
    }
    tu_fail(__FILE__, __LINE__, "tag \"%s\" not in report", tag);
    return NULL;
}

static void check_tag(const char *doc, const char *tag, long long blocks,
                      long long bytes, long long peak, long long allocs)
{
    const char *e, *s = jtag(doc, tag, &e);
    CHECK_INT(jnum(s, e, "blocks"), blocks);
    CHECK_INT(jnum(s, e, "bytes"), bytes);
    CHECK_INT(jnum(s, e, "peak_bytes"), peak);
    CHECK_INT(jnum(s, e, "allocs"), allocs);
}

static int iso_utc(const char *s)
{
    /* YYYY-MM-DDTHH:MM:SSZ */
    static const char shape[] = "dddd-dd-ddTdd:dd:ddZ";
    size_t i;
    if (strlen(s) != sizeof shape - 1)
        return 0;
    for (i = 0; i < sizeof shape - 1; i++)
        if (shape[i] == 'd' ? !isdigit((unsigned char)s[i]) : s[i] != shape[i])
            return 0;
    return 1;
}

static void check_header_b(const char *doc, const char *pool, const char *reason,
                           long long pid, const char *backing)
{
    char buf[256];
    CHECK_STR(jstr(doc, NULL, "format", buf, sizeof buf), "ringpool-snapshot");
    CHECK_INT(jnum(doc, NULL, "version"), 1);
    CHECK_STR(jstr(doc, NULL, "pool", buf, sizeof buf), pool);
    CHECK_INT(jnum(doc, NULL, "pid"), pid);
    CHECK(iso_utc(jstr(doc, NULL, "taken_at", buf, sizeof buf)));
    CHECK_STR(jstr(doc, NULL, "reason", buf, sizeof buf), reason);
    CHECK_STR(jstr(doc, NULL, "backing", buf, sizeof buf), backing);
}

static void check_header(const char *doc, const char *pool, const char *reason,
                         long long pid)
{
    check_header_b(doc, pool, reason, pid, tu_backing_name);
}

static void check_totals(const char *doc, long long blocks, long long bytes,
                         long long peak, long long allocs)
{
    const char *t = jfind(doc, NULL, "totals", "{");
    const char *e;
    CHECK(t != NULL);
    e = strchr(t, '}');
    CHECK_INT(jnum(t, e, "blocks"), blocks);
    CHECK_INT(jnum(t, e, "bytes"), bytes);
    CHECK_INT(jnum(t, e, "peak_bytes"), peak);
    CHECK_INT(jnum(t, e, "allocs"), allocs);
}

/* ------------------------------------------------------------- tests */
static void test_report_at_destroy(void)
{
    rp_pool *pool;
    char path[512], *doc;
    void *a1, *a2, *b1;
    make_tmpdir();
    snprintf(path, sizeof path, "%s/rep-%%p-%%n-%%%%.json", tmpdir);
    CHECK(setenv("RINGPOOL_REPORT", path, 1) == 0);
    CHECK(unsetenv("RINGPOOL_REPORT_BLOCKS") == 0);
    pool = tu_pool("my pool/1");
    a1 = rp_alloc(pool, 100, "alpha");
    a2 = rp_alloc(pool, 50, "alpha");
    b1 = rp_alloc(pool, 7, "beta");
    rp_free(a1);
    (void)a2; (void)b1;                 /* left for the report */
    tu_watched = NULL;
    rp_pool_destroy(pool);
    snprintf(path, sizeof path, "%s/rep-%ld-my_pool_1-%%.json", tmpdir, (long)getpid());
    doc = tu_slurp(path);
    check_header(doc, "my pool/1", "destroy", getpid());
    check_totals(doc, 2, 57, 157, 3);
    check_tag(doc, "alpha", 1, 50, 150, 2);
    check_tag(doc, "beta", 1, 7, 7, 1);
    CHECK(jfind(doc, NULL, "blocks", "[") == NULL); /* not asked for */
    CHECK(strstr(doc, "alpha") < strstr(doc, "beta")); /* first-use order */
    free(doc);
    CHECK_INT(count_files(), 1);

    /* read at each destroy: a new pattern takes effect at once */
    snprintf(path, sizeof path, "%s/second-%%n.json", tmpdir);
    CHECK(setenv("RINGPOOL_REPORT", path, 1) == 0);
    pool = tu_pool("two");
    a1 = rp_alloc(pool, 1, NULL);
    rp_free(a1);
    tu_end_pool(pool); /* an empty pool still reports */
    snprintf(path, sizeof path, "%s/second-two.json", tmpdir);
    doc = tu_slurp(path);
    check_header(doc, "two", "destroy", getpid());
    check_totals(doc, 0, 0, 1, 1);
    check_tag(doc, "(untagged)", 0, 0, 1, 1); /* listed with blocks: 0 */
    free(doc);
    CHECK_INT(count_files(), 2);

    /* unset: nothing is written */
    CHECK(unsetenv("RINGPOOL_REPORT") == 0);
    pool = tu_pool("three");
    (void)rp_alloc(pool, 1, NULL);
    tu_watched = NULL;
    rp_pool_destroy(pool);
    CHECK_INT(count_files(), 2);
    remove_tmpdir();
}

static void test_report_blocks(void)
{
    rp_pool *pool;
    char path[512], want[64], *doc;
    const char *arr;
    void *b[5];
    size_t i;
    make_tmpdir();
    snprintf(path, sizeof path, "%s/%%n.json", tmpdir);
    CHECK(setenv("RINGPOOL_REPORT", path, 1) == 0);
    CHECK(setenv("RINGPOOL_REPORT_BLOCKS", "1", 1) == 0);
    pool = tu_pool("blocks");
    for (i = 0; i < 5; i++)
        b[i] = rp_alloc(pool, 10 + i, i % 2 ? "odd" : "even");
    tu_watched = NULL;
    rp_pool_destroy(pool);
    CHECK(unsetenv("RINGPOOL_REPORT") == 0);
    CHECK(unsetenv("RINGPOOL_REPORT_BLOCKS") == 0);
    snprintf(path, sizeof path, "%s/blocks.json", tmpdir);
    doc = tu_slurp(path);
    arr = jfind(doc, NULL, "blocks", "[");
    CHECK(arr != NULL);
    for (i = 0; i < 5; i++) {
        const char *at, *e;
        snprintf(want, sizeof want, "\"%p\"", b[i]); /* glibc: 0x + lower hex */
        at = strstr(arr, want);
        if (at == NULL)
            tu_fail(__FILE__, __LINE__, "block %s not listed in %s", want, doc);
        {
            const char *s = at, *t;
            while (s > arr && *s != '{')
                s--;
            e = strchr(at, '}');
            CHECK(e != NULL);
            CHECK_INT(jnum(s, e, "size"), (long long)(10 + i));
            t = strstr(s, i % 2 ? "\"odd\"" : "\"even\"");
            CHECK(t != NULL && t < e);
        }
    }
    free(doc);
    remove_tmpdir();
}

static void test_report_request(void)
{
    rp_pool *pool = tu_pool("req");
    char path[512], *doc;
    char weird[] = "q\"b\\s\nl\x01\xff.";
    void *a;
    make_tmpdir();
    a = rp_alloc(pool, 3, weird);
    snprintf(path, sizeof path, "%s/req.json", tmpdir);
    CHECK_INT(rp_pool_write_report(pool, path), 0);
    doc = tu_slurp(path);
    check_header(doc, "req", "request", getpid());
    check_totals(doc, 1, 3, 3, 1);
    /* RFC 8259 escaping: quote, backslash, newline, control character */
    CHECK(strstr(doc, "\"q\\\"b\\\\s\\nl\\u0001\xef\xbf\xbd.\"") != NULL ||
          strstr(doc, "\"q\\\"b\\\\s\\u000al\\u0001\xef\xbf\xbd.\"") != NULL ||
          strstr(doc, "\"q\\\"b\\\\s\\u000Al\\u0001\xef\xbf\xbd.\"") != NULL);
    /* (newline as \n or \u000a; 0xff, not UTF-8, as U+FFFD) */
    free(doc);
    /* explicit flags: blocks listed without the environment */
    CHECK_INT(rp_pool_write_report_ex(pool, path, RP_REPORT_BLOCKS), 0);
    doc = tu_slurp(path);
    CHECK(jfind(doc, NULL, "blocks", "[") != NULL);
    free(doc);
    CHECK_INT(rp_pool_write_report(pool, "/nonexistent-dir/x/y.json"), RP_EIO);
    rp_free(a);
    CHECK_INT(rp_pool_write_report(pool, path), 0);
    doc = tu_slurp(path);
    check_totals(doc, 0, 0, 3, 1);
    free(doc);
    remove_tmpdir();
    tu_end_pool(pool);
}

/* --- at exit: a child exits with a live pool; its report says so */
static void child_live_at_exit(const char *arg)
{
    rp_pool *pool = tu_pool("live");
    (void)arg;
    (void)rp_alloc(pool, 11, "left");
    (void)rp_alloc(pool, 22, "left");
    exit(0);
}

static void test_report_at_exit(void)
{
    char env[600], path[512], *doc;
    tu_result r;
    make_tmpdir();
    snprintf(env, sizeof env, "RINGPOOL_REPORT=%s/exit-%%p-%%n.json", tmpdir);
    tu_spawn("live-at-exit", NULL, env, &r);
    CHECK(WIFEXITED(r.status));
    CHECK_INT(WEXITSTATUS(r.status), 0);
    snprintf(path, sizeof path, "%s/exit-%ld-live.json", tmpdir, (long)r.pid);
    doc = tu_slurp(path);
    check_header(doc, "live", "exit", r.pid);
    check_totals(doc, 2, 33, 33, 2);
    check_tag(doc, "left", 2, 33, 33, 2);
    free(doc);
    CHECK_INT(count_files(), 1);
    remove_tmpdir();
}

static void test_report_live_pools(void)
{
    char path[512];
    rp_pool *a, *b;
    void *x, *y;
    make_tmpdir();
    CHECK(unsetenv("RINGPOOL_REPORT") == 0);
    a = tu_pool("live-a");
    b = tu_pool("live-b");
    CHECK_INT(rp_report_live_pools(), 0); /* unset: nothing */
    snprintf(path, sizeof path, "%s/%%n.json", tmpdir);
    CHECK(setenv("RINGPOOL_REPORT", path, 1) == 0);
    x = rp_alloc(a, 5, "x");
    y = rp_alloc(b, 6, "y");
    CHECK_INT(rp_report_live_pools(), 2);
    CHECK(unsetenv("RINGPOOL_REPORT") == 0);
    CHECK_INT(count_files(), 2);
    {
        char *doc;
        snprintf(path, sizeof path, "%s/live-b.json", tmpdir);
        doc = tu_slurp(path);
        check_totals(doc, 1, 6, 6, 1);
        free(doc);
    }
    rp_free(x);
    rp_free(y);
    tu_end_pool(b);
    tu_end_pool(a);
    remove_tmpdir();
}

/* The default pool reports at rp_stat_destroy_pool(); a report path that
   cannot be written does not stop the bulk free (valgrind and ASan check). */
static void test_report_stat_and_unwritable(void)
{
    char path[512], *doc;
    rp_error_handler prev;
    rp_pool *pool;
    make_tmpdir();
    snprintf(path, sizeof path, "%s/%%n.json", tmpdir);
    CHECK(setenv("RINGPOOL_REPORT", path, 1) == 0);
    CHECK(setenv("RINGPOOL_REPORT_BLOCKS", "0", 1) == 0);
    rp_stat_create_pool();
    (void)rp_stat_strdup("left in the default pool");
    rp_stat_destroy_pool();
    snprintf(path, sizeof path, "%s/rp_stat.json", tmpdir);
    doc = tu_slurp(path);
    check_header_b(doc, "rp_stat", "destroy", getpid(), "malloc");
    check_totals(doc, 1, 25, 25, 1);
    check_tag(doc, "rp_stat", 1, 25, 25, 1);
    CHECK(jfind(doc, NULL, "blocks", "[") == NULL); /* "0" is not "1" */
    free(doc);

    CHECK(setenv("RINGPOOL_REPORT", "/nonexistent-dir/sub/%n.json", 1) == 0);
    prev = rp_set_error_handler(tu_record_error);
    tu_errors_reset();
    pool = tu_pool("unwritable");
    (void)rp_alloc(pool, 100, "still freed");
    tu_watched = NULL;
    rp_pool_destroy(pool);
    /* at most one report of the failure, and it names RP_EIO */
    CHECK(tu_err_count <= 1);
    if (tu_err_count == 1)
        CHECK_INT(tu_err_code[0], RP_EIO);
    rp_set_error_handler(prev);
    CHECK(unsetenv("RINGPOOL_REPORT") == 0);
    CHECK(unsetenv("RINGPOOL_REPORT_BLOCKS") == 0);
    CHECK_INT(count_files(), 1);
    remove_tmpdir();
}

/* The default error handler's line (the program's last: it aborts) names the
   pool by the CLI's rule, as the report's line does: a pool named with CR,
   LF and ESC is one line that drives no terminal. */
static int destroy_in_walk(void *block, size_t size, const char *tag, void *arg)
{
    (void)block, (void)size, (void)tag;
    rp_pool_destroy(arg);   /* RP_EBUSY: the default handler aborts */
    return 0;
}
static void child_error_pool_name(const char *arg)
{
    (void)arg;
    rp_set_error_handler(NULL);
    rp_pool *pool = tu_pool("pool\r\n\x1b[31m");
    (void)rp_alloc(pool, 10, "t");
    rp_pool_walk(pool, destroy_in_walk, pool);
    exit(3);   /* not reached */
}
static void test_default_error_line_escaped(void)
{
    tu_result r;
    tu_spawn("error-pool-name", NULL, NULL, &r);
    if (!WIFSIGNALED(r.status) || WTERMSIG(r.status) != SIGABRT)
        tu_fail(__FILE__, __LINE__, "status 0x%x, stderr:\n%s", r.status, r.err);
    const char *line = strstr(r.err, "ringpool: RP_EBUSY: ");
    CHECK(line != NULL);
    const char *end = strchr(line, '\n');
    CHECK(end != NULL);
    CHECK(memchr(line, '\x1b', (size_t)(end - line)) == NULL);
    CHECK(memchr(line, '\r', (size_t)(end - line)) == NULL);
    const char *name = strstr(line, "'pool\\r\\n\\x1b[31m'");
    CHECK(name != NULL && name < end);
}

int main(int argc, char **argv)
{
    static const tu_case cases[] = {
        {"report_at_destroy", test_report_at_destroy},
        {"report_blocks", test_report_blocks},
        {"report_request", test_report_request},
        {"report_at_exit", test_report_at_exit},
        {"report_live_pools", test_report_live_pools},
        {"report_stat_and_unwritable", test_report_stat_and_unwritable},
        {"default_error_line_escaped", test_default_error_line_escaped},
    };
    static const tu_child children[] = {
        {"live-at-exit", child_live_at_exit},
        {"error-pool-name", child_error_pool_name},
    };
    return tu_main(argc, argv, cases, TU_NCASES(cases), children,
                   TU_NCASES(children));
}
