/*
 * testutil.h -- the few helpers every C test of ringpool uses.
 *
 * A test program is a list of cases run by tu_main().  Every case runs once
 * per invocation with the backing chosen by the first argument ("malloc" or
 * "arena"; default: $RP_TEST_BACKING, else "malloc"); the build runs each
 * program once per backing.  tu_pool() creates a pool with that backing and
 * makes it the pool whose report is dumped to stderr when a check fails;
 * tu_end_pool() asserts the pool is empty and consistent, then destroys it.
 *
 *   prog [malloc|arena] [case]        run every case, or only the one named
 *   prog BACKING --child NAME [ARG]   run child NAME (used by tu_spawn)
 *
 * $RP_TEST_QUICK=1 asks for smaller loop counts (valgrind runs).
 */
#ifndef RP_TESTUTIL_H
#define RP_TESTUTIL_H

#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ringpool.h"

#define TU_UNUSED __attribute__((unused))

/* ------------------------------------------------------------ state */
static TU_UNUSED unsigned    tu_backing;          /* 0 or RP_POOL_ARENA */
static TU_UNUSED const char *tu_backing_name = "malloc";
static TU_UNUSED const char *tu_argv0;
static TU_UNUSED const char *tu_case_name = "";
static TU_UNUSED rp_pool    *tu_watched;          /* dumped on failure */

/* ------------------------------------------------------------ failure */
static inline void tu_dump_pool(rp_pool *pool)
{
    rp_tag_stat st[64];
    size_t bytes = 0, n, i;
    if (pool == NULL)
        return;
    n = rp_pool_stats(pool, st, 64);
    fprintf(stderr, "--- pool '%s' contains %zu bytes in %zu blocks (%zu tags)\n",
            rp_pool_name(pool), (rp_pool_outstanding(pool, &bytes), bytes),
            rp_pool_outstanding(pool, NULL), n);
    for (i = 0; i < n && i < 64; i++)
        fprintf(stderr, "    %-40s %8zu bytes in %6zu blocks (peak %zu, allocs %llu)\n",
                st[i].tag, st[i].bytes, st[i].blocks, st[i].peak_bytes,
                (unsigned long long)st[i].allocs);
    fflush(stderr);
    (void)rp_pool_write_report_ex(pool, "/dev/stderr", RP_REPORT_BLOCKS | RP_REPORT_CHILDREN);
    fputc('\n', stderr);
}

static inline _Noreturn void tu_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s:%d: [%s/%s] check failed: ", file, line, tu_case_name,
            tu_backing_name);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    tu_dump_pool(tu_watched);
    exit(1);
}

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond))                                                           \
            tu_fail(__FILE__, __LINE__, "%s", #cond);                          \
    } while (0)

#define CHECK_EQ(a, b)                                                         \
    do {                                                                       \
        unsigned long long a_ = (unsigned long long)(a);                       \
        unsigned long long b_ = (unsigned long long)(b);                       \
        if (a_ != b_)                                                          \
            tu_fail(__FILE__, __LINE__, "%s == %s (%llu != %llu)", #a, #b,     \
                    a_, b_);                                                   \
    } while (0)

#define CHECK_INT(a, b)                                                        \
    do {                                                                       \
        long long a_ = (long long)(a), b_ = (long long)(b);                    \
        if (a_ != b_)                                                          \
            tu_fail(__FILE__, __LINE__, "%s == %s (%lld != %lld)", #a, #b,     \
                    a_, b_);                                                   \
    } while (0)

#define CHECK_STR(a, b)                                                        \
    do {                                                                       \
        const char *a_ = (a), *b_ = (b);                                       \
        if (a_ == NULL || b_ == NULL || strcmp(a_, b_) != 0)                   \
            tu_fail(__FILE__, __LINE__, "%s == %s (\"%s\" != \"%s\")", #a, #b, \
                    a_ ? a_ : "(null)", b_ ? b_ : "(null)");                   \
    } while (0)

/* Asserts the pool holds exactly blocks/bytes. */
#define CHECK_COUNTS(pool, nblocks, nbytes)                                    \
    do {                                                                       \
        size_t by_ = 0;                                                        \
        size_t bl_ = rp_pool_outstanding((pool), &by_);                        \
        CHECK_EQ(bl_, (nblocks));                                              \
        CHECK_EQ(by_, (nbytes));                                               \
    } while (0)

/* qsort/bsearch order of an array of pointers: by address. */
static inline int tu_cmp_ptr(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t)*(void *const *)a, y = (uintptr_t)*(void *const *)b;
    return (x > y) - (x < y);
}

/* ------------------------------------------------------------ files */
/* The whole of the file at path (a report), NUL-terminated, malloc'd; a file
   that cannot be read, or is empty, fails the test. */
static inline char *tu_slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        tu_fail(__FILE__, __LINE__, "cannot open %s: %s", path, strerror(errno));
    CHECK(fseek(f, 0, SEEK_END) == 0);
    long n = ftell(f);
    CHECK(n > 0);
    rewind(f);
    char *buf = malloc((size_t)n + 1);
    CHECK(buf != NULL);
    CHECK(fread(buf, 1, (size_t)n, f) == (size_t)n);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* ------------------------------------------------------------ forks */
/* A fork whose child answers through a pipe: fd[1] the child's write end
   (tu_child_answer), fd[0] the parent's read end (tu_child_verdict). In the
   child (0 returned) the read end is closed and an alarm of 300 s makes a
   hang the failure (generous: valgrind on a loaded machine is slow). */
static inline pid_t tu_fork_answering(int fd[2])
{
    CHECK(pipe(fd) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        close(fd[0]);
        alarm(300);
    }
    return pid;
}

/* The byte a forked child (pid) wrote to fd before it ended, read after
   closing the write end wfd; waits for the child and stores how it ended in
   *status. A child that wrote nothing fails the test, with how it ended (a
   hang's alarm, a crash or an exit) on stderr. */
static inline char tu_child_verdict(pid_t pid, int fd, int wfd, int round, int *status)
{
    close(wfd);
    char verdict = 0;
    ssize_t got;
    do got = read(fd, &verdict, 1); while (got < 0 && errno == EINTR);
    close(fd);
    CHECK(waitpid(pid, status, 0) == pid);
    if (got != 1)
        fprintf(stderr, "fork round %d: the child wrote nothing and %s %d\n", round,
                WIFSIGNALED(*status) ? "died of signal" : "exited with",
                WIFSIGNALED(*status) ? WTERMSIG(*status) : WEXITSTATUS(*status));
    CHECK(got == 1);
    return verdict;
}

/* The child's half: writes verdict to wfd, then ends by SIGKILL: no exit
   handlers, and no leak check of the parent's memory when the tests run
   under valgrind (exit status 3 if the write fails). */
static inline _Noreturn void tu_child_answer(int wfd, char verdict)
{
    if (write(wfd, &verdict, 1) != 1)
        _exit(3);
    kill(getpid(), SIGKILL);
    _exit(3);   /* not reached */
}

/* ------------------------------------------------------------ pools */
static inline int tu_quick(void)
{
    const char *q = getenv("RP_TEST_QUICK");
    return q != NULL && *q != '\0' && strcmp(q, "0") != 0;
}

/* A pool of this run's backing with flags and chunk_size chunk (0: the
   default), made the pool dumped when a check fails. */
static inline rp_pool *tu_pool_chunk(const char *name, unsigned flags, size_t chunk)
{
    rp_pool_options o;
    rp_pool *p;
    memset(&o, 0, sizeof o);
    o.flags = flags | tu_backing;
    o.chunk_size = chunk;
    p = rp_pool_create_ex(name, &o);
    if (p == NULL)
        tu_fail(__FILE__, __LINE__, "rp_pool_create_ex(%s) returned NULL", name);
    tu_watched = p;
    return p;
}

static inline rp_pool *tu_pool_ex(const char *name, unsigned flags)
{
    return tu_pool_chunk(name, flags, 0);
}

static inline rp_pool *tu_pool(const char *name) { return tu_pool_ex(name, 0); }

/* Every test ends here: nothing outstanding, ring consistent, then destroy. */
#define tu_end_pool(pool)                                                      \
    do {                                                                       \
        rp_pool *ep_ = (pool);                                                 \
        CHECK_EQ(rp_pool_outstanding(ep_, NULL), 0);                           \
        CHECK_INT(rp_pool_check(ep_), 0);                                      \
        if (tu_watched == ep_)                                                 \
            tu_watched = NULL;                                                 \
        rp_pool_destroy(ep_);                                                  \
    } while (0)

/* The pools of this run are arena pools. */
static inline int tu_is_arena(void) { return tu_backing == RP_POOL_ARENA; }

/* rp_pool_get_info of pool (which must succeed). */
static inline rp_pool_info tu_info(rp_pool *pool)
{
    rp_pool_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    CHECK_INT(rp_pool_get_info(pool, &info), 0);
    return info;
}

/* ------------------------------------------------------------ contents */
/* Byte i of the pattern of seed; tu_fill writes it to n bytes, tu_intact
   checks they still hold it. */
static inline unsigned char tu_byte(size_t i, unsigned seed)
{
    return (unsigned char)(i * 31u + seed);
}

static inline void tu_fill(unsigned char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = tu_byte(i, seed);
}

static inline int tu_intact(const unsigned char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != tu_byte(i, seed))
            return 0;
    return 1;
}

/* ------------------------------------------------------------ handlers */
/* Recording error handler: remembers every report, returns (call is a no-op). */
#define TU_MAX_ERRORS 16
static TU_UNUSED int         tu_err_count;
static TU_UNUSED int         tu_err_code[TU_MAX_ERRORS];
static TU_UNUSED char        tu_err_msg[TU_MAX_ERRORS][256];
static TU_UNUSED const void *tu_err_block[TU_MAX_ERRORS];

static inline void tu_record_error(int error, const char *message, const void *block)
{
    if (tu_err_count < TU_MAX_ERRORS) {
        tu_err_code[tu_err_count] = error;
        snprintf(tu_err_msg[tu_err_count], sizeof tu_err_msg[0], "%s",
                 message ? message : "(null)");
        tu_err_block[tu_err_count] = block;
    }
    tu_err_count++;
}

static inline void tu_errors_reset(void) { tu_err_count = 0; }

/* Exactly one error of code was reported since the last reset, with a
   one-line, non-empty message. */
#define CHECK_ONE_ERROR(code)                                                  \
    do {                                                                       \
        CHECK_INT(tu_err_count, 1);                                            \
        CHECK_INT(tu_err_code[0], (code));                                     \
        CHECK(tu_err_msg[0][0] != '\0');                                       \
        CHECK(strchr(tu_err_msg[0], '\n') == NULL);                            \
        tu_errors_reset();                                                     \
    } while (0)

/* OOM handler that escapes with longjmp, recording what it was told. */
static TU_UNUSED jmp_buf tu_oom_env;
static TU_UNUSED int     tu_oom_hits;
static TU_UNUSED char    tu_oom_call[64];
static TU_UNUSED size_t  tu_oom_size;
static TU_UNUSED char    tu_oom_tag[128];

static inline void tu_oom_escape(const char *call, size_t size, const char *tag)
{
    tu_oom_hits++;
    snprintf(tu_oom_call, sizeof tu_oom_call, "%s", call ? call : "(null)");
    tu_oom_size = size;
    snprintf(tu_oom_tag, sizeof tu_oom_tag, "%s", tag ? tag : "(null)");
    longjmp(tu_oom_env, 1);
}

/* Evaluates expr, which must call the OOM handler (and so never return);
   afterwards tu_oom_call/size/tag hold what the handler was told. */
#define EXPECT_OOM(expr)                                                       \
    do {                                                                       \
        rp_oom_handler prev_ = rp_set_oom_handler(tu_oom_escape);              \
        tu_oom_hits = 0;                                                       \
        if (setjmp(tu_oom_env) == 0) {                                         \
            void *volatile r_ = (void *)(expr);                                \
            (void)r_;                                                          \
            rp_set_oom_handler(prev_);                                         \
            tu_fail(__FILE__, __LINE__, "%s returned instead of calling the "  \
                    "OOM handler", #expr);                                     \
        }                                                                      \
        rp_set_oom_handler(prev_);                                             \
        CHECK_INT(tu_oom_hits, 1);                                             \
    } while (0)

/* ------------------------------------------------------------ children */
typedef struct tu_child {
    const char *name;
    void (*fn)(const char *arg);   /* must exit() or die */
} tu_child;

typedef struct tu_result {
    pid_t pid;
    int  status;                   /* from waitpid */
    char err[4096];                /* the child's stderr (truncated) */
} tu_result;

/* Runs this program again as "--child name arg" with stderr captured and the
   given environment variable set (env may be NULL).  The child is exec'd, so
   under valgrind it runs natively and its deliberate abort is not an error
   of the parent. */
static inline void tu_spawn(const char *name, const char *arg, const char *env,
                     tu_result *res)
{
    int fd[2];
    pid_t pid;
    size_t used = 0;
    ssize_t got;
    CHECK(pipe(fd) == 0);
    fflush(NULL);
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        char *argv[6];
        close(fd[0]);
        dup2(fd[1], 2);
        close(fd[1]);
        if (env != NULL)
            putenv((char *)env);
        argv[0] = (char *)tu_argv0;
        argv[1] = (char *)tu_backing_name;
        argv[2] = (char *)"--child";
        argv[3] = (char *)name;
        argv[4] = (char *)(arg ? arg : "");
        argv[5] = NULL;
        execv(tu_argv0, argv);
        _exit(127);
    }
    close(fd[1]);
    res->pid = pid;
    while ((got = read(fd[0], res->err + used, sizeof res->err - 1 - used)) > 0)
        used += (size_t)got;
    res->err[used] = '\0';
    /* drain anything beyond the buffer */
    {
        char sink[256];
        while (read(fd[0], sink, sizeof sink) > 0) {
        }
    }
    close(fd[0]);
    CHECK(waitpid(pid, &res->status, 0) == pid);
}

/* ------------------------------------------------------------ timing */
static inline double tu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ------------------------------------------------------------ driver */
typedef struct tu_case {
    const char *name;
    void (*fn)(void);
} tu_case;

static inline int tu_main(int argc, char **argv, const tu_case *cases, size_t ncases,
                   const tu_child *children, size_t nchildren)
{
    const char *b = getenv("RP_TEST_BACKING");
    const char *only = NULL;
    size_t i;
    tu_argv0 = argv[0];
    if (argc > 1)
        b = argv[1];
    if (b == NULL || strcmp(b, "malloc") == 0 || *b == '\0') {
        tu_backing = 0;
        tu_backing_name = "malloc";
    } else if (strcmp(b, "arena") == 0) {
        tu_backing = RP_POOL_ARENA;
        tu_backing_name = "arena";
    } else {
        fprintf(stderr, "%s: unknown backing '%s' (use malloc or arena)\n",
                argv[0], b);
        return 2;
    }
    if (argc > 3 && strcmp(argv[2], "--child") == 0) {
        for (i = 0; i < nchildren; i++)
            if (strcmp(children[i].name, argv[3]) == 0) {
                tu_case_name = children[i].name;
                children[i].fn(argc > 4 ? argv[4] : "");
                return 0;
            }
        fprintf(stderr, "%s: no child '%s'\n", argv[0], argv[3]);
        return 2;
    }
    if (argc > 2)
        only = argv[2];
    for (i = 0; i < ncases; i++)
        if (only == NULL || strcmp(only, cases[i].name) == 0)
            break;
    if (i == ncases) {
        fprintf(stderr, "%s: no case '%s'\n", argv[0], only ? only : "");
        return 2;
    }
    for (i = 0; i < ncases; i++) {
        double t0;
        if (only != NULL && strcmp(only, cases[i].name) != 0)
            continue;
        tu_case_name = cases[i].name;
        t0 = tu_now();
        cases[i].fn();
        tu_watched = NULL;
        printf("ok   %-32s [%s] %.3f s\n", cases[i].name, tu_backing_name,
               tu_now() - t0);
        fflush(stdout);
    }
    return 0;
}

#define TU_NCASES(a) (sizeof(a) / sizeof((a)[0]))

#endif /* RP_TESTUTIL_H */
