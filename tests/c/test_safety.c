/* test_safety.c -- options that cannot work are refused at creation, a
   _noexc call that cannot keep every invariant fails and changes nothing,
   and exit() from user code called by the library never hangs. */
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/stat.h>

#include "testutil.h"

/* ------------------------------------------------------ pool options */

/* A chunk size the arena cannot use (near SIZE_MAX, where rounding it up
   would wrap to 0) is RP_EINVAL at creation, through the error handler. */
static void test_huge_chunk_size_refused(void)
{
    static const size_t bad[] = {SIZE_MAX, SIZE_MAX - 1, SIZE_MAX - 15, SIZE_MAX - 16,
                                 (size_t)1 << 63, RP_MAX_SIZE + 1};
    rp_error_handler prev = rp_set_error_handler(tu_record_error);
    size_t i;
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        rp_pool_options o;
        rp_pool *p;
        memset(&o, 0, sizeof o);
        o.flags = RP_POOL_ARENA | (i % 2 ? RP_POOL_UNSYNC : 0);
        o.chunk_size = bad[i];
        tu_errors_reset();
        p = rp_pool_create_ex("huge-chunk", &o);
        if (p != NULL) {
            /* before the fix the pool was made: show what it does */
            void *b = rp_alloc_noexc(p, 64, "t");
            if (b != NULL) memset(b, 0, 64);
            rp_pool_destroy(p);
        }
        CHECK(p == NULL);
        CHECK_ONE_ERROR(RP_EINVAL);
    }
    /* the largest accepted chunk size is still accepted (chunks are only
       allocated on first use) */
    {
        rp_pool_options o;
        rp_pool *p;
        memset(&o, 0, sizeof o);
        o.flags = RP_POOL_ARENA;
        o.chunk_size = (64u << 10) + 1;   /* rounded up, not refused */
        p = rp_pool_create_ex("odd-chunk", &o);
        CHECK(p != NULL);
        CHECK_INT(tu_err_count, 0);
        {
            char *b = rp_alloc(p, 1000, "t");
            memset(b, 1, 1000);
            rp_free(b);
        }
        tu_end_pool(p);
    }
    rp_set_error_handler(prev);
}

/* ------------------------------------------- destructor map under OOM */
static int dtor_runs;
static void count_dtor(void *b)
{
    (void)b;
    dtor_runs++;
}

/* Moving a block with a destructor (rp_resize_noexc) while the destructor
   map must grow and cannot: the call fails and changes nothing, or succeeds
   with the destructor still attached. Every destructor runs exactly once. */
static void test_resize_keeps_destructor_under_oom(void)
{
    int n, moved_ok = 0, failed = 0;
    for (n = 1; n <= 12; n++) {
        rp_pool *pool = tu_pool("dtor-oom");
        void *b[16], *pin[16];
        int i;
        dtor_runs = 0;
        /* 12 destructors fill a 16-slot map to its growth threshold */
        for (i = 0; i < 12; i++) {
            b[i] = rp_alloc(pool, 24, "d");
            pin[i] = rp_alloc(pool, 24, "pin");  /* keeps realloc from growing in place */
            CHECK_INT(rp_set_destructor(b[i], count_dtor), 0);
        }
        for (i = 0; i < 12; i++) {
            void *r;
            memset(b[i], 0x5a, 24);
            rp_debug_fail_after(n, 0);
            r = rp_resize_noexc(pool, b[i], 200000 + (size_t)i * 4096);
            rp_debug_fail_after(0, 0);
            if (r == NULL) {
                failed++;
                CHECK_EQ(rp_block_size(b[i]), 24);
            } else {
                moved_ok += r != b[i];
                b[i] = r;
                CHECK_EQ(((unsigned char *)r)[23], 0x5a);
            }
        }
        CHECK_INT(rp_pool_check(pool), 0);
        /* each free runs its destructor once; nothing is left to destroy */
        for (i = 0; i < 12; i++) {
            rp_free(b[i]);
            CHECK_INT(dtor_runs, i + 1);
            rp_free(pin[i]);
        }
        tu_end_pool(pool);
        CHECK_INT(dtor_runs, 12);
    }
    CHECK(failed > 0);
    CHECK(moved_ok > 0);
}

/* The same, with a second moving resize after the injected failure: the
   destructor still follows the block wherever it goes. */
static void test_second_move_keeps_destructor(void)
{
    int n;
    for (n = 1; n <= 6; n++) {
        rp_pool *pool = tu_pool("dtor-oom-2");
        void *b[12], *pin[12];
        int i;
        dtor_runs = 0;
        for (i = 0; i < 12; i++) {
            b[i] = rp_alloc(pool, 40, "d");
            pin[i] = rp_alloc(pool, 40, "pin");
            CHECK_INT(rp_set_destructor(b[i], count_dtor), 0);
        }
        rp_debug_fail_after(n, 0);
        for (i = 0; i < 12; i++) {
            void *r = rp_resize_noexc(pool, b[i], 100000);
            if (r) b[i] = r;
        }
        rp_debug_fail_after(0, 0);
        for (i = 0; i < 12; i++)
            b[i] = rp_resize(pool, b[i], 300000);
        for (i = 0; i < 12; i++) {
            rp_free(b[i]);
            rp_free(pin[i]);
        }
        CHECK_INT(dtor_runs, 12);
        tu_end_pool(pool);
    }
}

/* ------------------------------------------ failed calls change nothing */

/* A _noexc call that fails (out of memory) leaves no trace in the
   statistics: no new tag, in rp_pool_stats, rp_pool_info or the report;
   nor does a tag that was only interned. */
static void test_failed_noexc_adds_no_tag(void)
{
    rp_pool *pool = tu_pool("no-new-tag");
    rp_tag_stat st[8];
    rp_pool_info info;
    const char *tmp = getenv("TMPDIR");
    char path[512], buf[8192];
    FILE *f;
    size_t n;
    int k;
    void *keep = rp_alloc(pool, 10, "kept");
    snprintf(path, sizeof path, "%s/no-new-tag-%d.json", tmp ? tmp : "/tmp", (int)getpid());
    (void)rp_pool_intern_tag(pool, "only-interned");
    for (k = 1; k <= 4; k++) {
        void *r;
        rp_debug_fail_after(k, 1);
        r = rp_alloc_noexc(pool, 5000, "never-allocated");
        rp_debug_fail_after(0, 0);
        if (r != NULL) { rp_free(r); break; }
    }
    CHECK(k > 1);
    n = rp_pool_stats(pool, st, 8);
    info = tu_info(pool);
    CHECK_STR(st[0].tag, "kept");
    if (k <= 4) {   /* the last try succeeded: that tag is real now */
        CHECK_EQ(n, 2);
        CHECK_STR(st[1].tag, "never-allocated");
    } else {
        CHECK_EQ(n, 1);
    }
    CHECK_EQ(info.tags, n);
    CHECK_INT(rp_pool_write_report(pool, path), 0);
    f = fopen(path, "r");
    CHECK(f != NULL);
    buf[fread(buf, 1, sizeof buf - 1, f)] = '\0';
    fclose(f);
    unlink(path);
    CHECK(strstr(buf, "only-interned") == NULL);
    rp_free(keep);
    tu_end_pool(pool);
}

/* rp_pool_info.flags holds exactly the RP_POOL_* flags the pool was made
   with: no internal bit (the malloc backing's recycling, unlisted tags). */
static void test_info_flags_are_the_public_flags(void)
{
    static const unsigned variants[] = {0, RP_POOL_UNSYNC, RP_POOL_CHECKED,
                                        RP_POOL_UNSYNC | RP_POOL_CHECKED};
    size_t i;
    for (i = 0; i < sizeof variants / sizeof variants[0]; i++) {
        rp_pool *p = tu_pool_ex("flags", variants[i]);
        rp_pool_info info;
        (void)rp_pool_intern_tag(p, "interned-only");
        rp_free(rp_alloc(p, 10, "t"));
        info = tu_info(p);
        CHECK_EQ(info.flags, variants[i] | tu_backing);
        tu_end_pool(p);
    }
}

/* ------------------------------------------------ exit from user code */

static void exit_handler(int error, const char *message, const void *block)
{
    (void)error; (void)message; (void)block;
    exit(7);
}

/* An error handler that calls exit() from rp_pool_check on a checked pool
   with a corrupt block: the process exits (the at-exit reports run). */
static void child_exit_from_check_handler(const char *arg)
{
    rp_pool *pool = tu_pool_ex("exit-check", RP_POOL_CHECKED);
    unsigned char *b = rp_alloc(pool, 32, "victim");
    (void)arg;
    alarm(20);
    memset(b - 4, 0xAB, 4);   /* underflow into the header */
    rp_set_error_handler(exit_handler);
    rp_pool_check(pool);
    _exit(3);                 /* the handler did not run */
}

static int exit_visitor(void *block, size_t size, const char *tag, void *arg)
{
    (void)block; (void)size; (void)tag; (void)arg;
    exit(7);
}

/* A walk visitor calling exit() while $RINGPOOL_REPORT is set: the at-exit
   report of the walked pool is written and the process ends. */
static void child_exit_from_walk(const char *arg)
{
    unsigned flags = strcmp(arg, "unsync") == 0 ? RP_POOL_UNSYNC
                   : strcmp(arg, "checked") == 0 ? RP_POOL_CHECKED : 0;
    rp_pool *pool = tu_pool_ex("exit-walk", flags);
    alarm(20);
    (void)rp_alloc(pool, 10, "leak");
    rp_pool_walk(pool, exit_visitor, NULL);
    _exit(3);
}

/* A cleanup calling exit() during rp_pool_destroy. */
static void exit_cleanup(void *arg)
{
    (void)arg;
    exit(7);
}
static void child_exit_from_cleanup(const char *arg)
{
    rp_pool *pool = tu_pool_ex("exit-cleanup", RP_POOL_CHECKED);
    (void)arg;
    alarm(20);
    (void)rp_alloc(pool, 10, "leak");
    rp_pool_add_cleanup(pool, exit_cleanup, NULL);
    rp_pool_destroy(pool);
    _exit(3);
}

/* exit() while another thread holds the pool's lock and keeps it (its
   report is stuck writing into a FIFO nobody reads): the at-exit report of
   that pool is given up after a bounded wait, and the process ends. */
static void *stuck_writer(void *arg)
{
    rp_pool *pool = arg;
    char path[600];
    snprintf(path, sizeof path, "%s/stuck.fifo", getenv("RP_TEST_FIFO_DIR"));
    rp_pool_write_report_ex(pool, path, RP_REPORT_BLOCKS);   /* blocks */
    return NULL;
}

static void child_exit_while_locked(const char *arg)
{
    rp_pool *pool = tu_pool("stuck");
    char path[600];
    pthread_t th;
    int i, fd;
    (void)arg;
    alarm(20);
    for (i = 0; i < 4000; i++) (void)rp_alloc(pool, 8, "fill");
    snprintf(path, sizeof path, "%s/stuck.fifo", getenv("RP_TEST_FIFO_DIR"));
    unlink(path);
    if (mkfifo(path, 0600) != 0) _exit(5);
    fd = open(path, O_RDONLY | O_NONBLOCK);   /* a reader that never reads */
    if (fd < 0) _exit(5);
    pthread_create(&th, NULL, stuck_writer, pool);
    usleep(300000);
    exit(7);
}

static void test_exit_while_other_thread_holds_lock(void)
{
    const char *tmp = getenv("TMPDIR");
    char env[800], dirv[600], path[700];
    tu_result r;
    snprintf(dirv, sizeof dirv, "%s", tmp ? tmp : "/tmp");
    setenv("RP_TEST_FIFO_DIR", dirv, 1);
    snprintf(env, sizeof env, "RINGPOOL_REPORT=%s/stuck-%d-%%n.json", dirv, (int)getpid());
    tu_spawn("exit-locked", "", env, &r);
    if (!WIFEXITED(r.status) || WEXITSTATUS(r.status) != 7)
        tu_fail(__FILE__, __LINE__, "status 0x%x (signal %d), stderr:\n%s", r.status,
                WIFSIGNALED(r.status) ? WTERMSIG(r.status) : 0, r.err);
    CHECK(strstr(r.err, "stuck") != NULL);   /* one line says the report was given up */
    snprintf(path, sizeof path, "%s/stuck.fifo", dirv);
    unlink(path);
}

static void file_has(const char *path, const char *what)
{
    char buf[8192];
    size_t n;
    FILE *f = fopen(path, "r");
    CHECK(f != NULL);
    n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    if (strstr(buf, what) == NULL)
        tu_fail(__FILE__, __LINE__, "%s lacks %s:\n%s", path, what, buf);
}

static void test_exit_from_user_code_does_not_hang(void)
{
    static const struct { const char *child, *arg, *pool; } runs[] = {
        {"exit-check", "", "exit-check"},
        {"exit-walk", "locked", "exit-walk"},
        {"exit-walk", "unsync", "exit-walk"},
        {"exit-walk", "checked", "exit-walk"},
        {"exit-cleanup", "", "exit-cleanup"},
    };
    const char *tmp = getenv("TMPDIR");
    size_t i;
    for (i = 0; i < sizeof runs / sizeof runs[0]; i++) {
        char env[512], path[512];
        tu_result r;
        snprintf(path, sizeof path, "%s/exit-%d-%zu-%s.json", tmp ? tmp : "/tmp",
                 (int)getpid(), i, runs[i].pool);
        snprintf(env, sizeof env, "RINGPOOL_REPORT=%s/exit-%d-%zu-%%n.json", tmp ? tmp : "/tmp",
                 (int)getpid(), i);
        unlink(path);
        tu_spawn(runs[i].child, runs[i].arg, env, &r);
        if (!WIFEXITED(r.status) || WEXITSTATUS(r.status) != 7)
            tu_fail(__FILE__, __LINE__, "%s %s: status 0x%x (signal %d), stderr:\n%s",
                    runs[i].child, runs[i].arg, r.status,
                    WIFSIGNALED(r.status) ? WTERMSIG(r.status) : 0, r.err);
        file_has(path, "\"reason\": \"exit\"");
        unlink(path);
    }
}

int main(int argc, char **argv)
{
    static const tu_case cases[] = {
        {"huge_chunk_size_refused", test_huge_chunk_size_refused},
        {"resize_keeps_destructor_under_oom", test_resize_keeps_destructor_under_oom},
        {"second_move_keeps_destructor", test_second_move_keeps_destructor},
        {"exit_from_user_code_does_not_hang", test_exit_from_user_code_does_not_hang},
        {"failed_noexc_adds_no_tag", test_failed_noexc_adds_no_tag},
        {"info_flags_are_the_public_flags", test_info_flags_are_the_public_flags},
        {"exit_while_other_thread_holds_lock", test_exit_while_other_thread_holds_lock},
    };
    static const tu_child children[] = {
        {"exit-check", child_exit_from_check_handler},
        {"exit-walk", child_exit_from_walk},
        {"exit-cleanup", child_exit_from_cleanup},
        {"exit-locked", child_exit_while_locked},
    };
    return tu_main(argc, argv, cases, TU_NCASES(cases), children, TU_NCASES(children));
}
