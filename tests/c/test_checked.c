/* test_checked.c -- RP_POOL_CHECKED misuse detection, the default error
   handler, and the error table. */
#include "testutil.h"

/* Every misuse: reported once with the right code and a one-line message,
   the call does nothing, and the pool keeps its counts and passes the check. */
static void test_double_free(void)
{
    rp_pool *pool = tu_pool_ex("double-free", RP_POOL_CHECKED);
    rp_error_handler prev = rp_set_error_handler(tu_record_error);
    void *keep = rp_alloc(pool, 24, "keep");
    void *b = rp_alloc(pool, 40, "victim");
    tu_errors_reset();
    rp_free(b);
    CHECK_INT(tu_err_count, 0);
    CHECK_COUNTS(pool, 1, 24);
    rp_free(b);
    CHECK_ONE_ERROR(RP_EDOUBLEFREE);
    CHECK_COUNTS(pool, 1, 24);
    CHECK_INT(rp_pool_check(pool), 0);
    CHECK_INT(tu_err_count, 0);
    /* a freed-then-reused address is a live block again, not an error */
    b = rp_alloc(pool, 40, "victim");
    rp_free(b);
    CHECK_INT(tu_err_count, 0);
    rp_free(keep);
    rp_set_error_handler(prev);
    tu_end_pool(pool);
}

static void test_foreign(void)
{
    rp_pool *pool = tu_pool_ex("foreign", RP_POOL_CHECKED);
    rp_error_handler prev = rp_set_error_handler(tu_record_error);
    unsigned char *m = malloc(64);
    unsigned char *keep = rp_alloc(pool, 64, "keep");
    int local = 0;
    CHECK(m != NULL);
    memset(m, 0, 64);
    tu_errors_reset();
    rp_free(m);
    CHECK_ONE_ERROR(RP_EFOREIGN);
    CHECK(rp_resize(pool, m, 10) == NULL);
    CHECK_ONE_ERROR(RP_EFOREIGN);
    CHECK(rp_resize_noexc(pool, m, 10) == NULL);
    CHECK_ONE_ERROR(RP_EFOREIGN);
    rp_free(&local);
    CHECK_ONE_ERROR(RP_EFOREIGN);
    /* a pointer into the middle of a live block is not a block */
    rp_free(keep + 32);
    CHECK_INT(tu_err_count, 1);
    CHECK(tu_err_code[0] == RP_EFOREIGN || tu_err_code[0] == RP_ECORRUPT);
    tu_errors_reset();
    CHECK_COUNTS(pool, 1, 64);
    CHECK_INT(rp_pool_check(pool), 0);
    CHECK_INT(tu_err_count, 0);
    free(m); /* still ours */
    rp_free(keep);
    rp_set_error_handler(prev);
    tu_end_pool(pool);
}

static void test_underflow(void)
{
    rp_pool *pool = tu_pool_ex("underflow", RP_POOL_CHECKED);
    rp_error_handler prev = rp_set_error_handler(tu_record_error);
    unsigned char *b = rp_alloc(pool, 32, "victim");
    unsigned char *other = rp_alloc(pool, 16, "other");
    unsigned char saved[8];
    int n;
    memcpy(saved, b - 8, 8);
    memset(b - 4, 0xAB, 4); /* a buffer underflow over the header's tail */
    tu_errors_reset();
    rp_free(b);
    CHECK_ONE_ERROR(RP_ECORRUPT);
    CHECK(rp_resize_noexc(pool, b, 64) == NULL);
    CHECK_ONE_ERROR(RP_ECORRUPT);
    /* the corrupt block is left where it is and the check finds it */
    CHECK_INT(rp_pool_check(pool), RP_ECORRUPT);
    CHECK(tu_err_count >= 1);
    CHECK_INT(tu_err_code[0], RP_ECORRUPT);
    tu_errors_reset();
    /* the rest of the pool is unharmed */
    rp_free(other);
    CHECK_INT(tu_err_count, 0);
    other = rp_alloc(pool, 16, "other");
    /* repaired, the block is whole again, with the counts it had */
    memcpy(b - 8, saved, 8);
    CHECK_INT(rp_pool_check(pool), 0);
    CHECK_INT(tu_err_count, 0);
    CHECK_COUNTS(pool, 2, 48);
    /* a single flipped byte in the first word of the header, too */
    n = 0;
    {
        size_t i;
        for (i = 1; i <= 32; i *= 2) {
            unsigned char keep = b[-(long)i];
            b[-(long)i] ^= 0x40;
            rp_free(b);
            n += tu_err_count == 1 && tu_err_code[0] == RP_ECORRUPT;
            tu_errors_reset();
            b[-(long)i] = keep;
        }
    }
    /* offsets 1,2,4,8,16,32 reach every field of a 32-byte header */
    CHECK_INT(n, 6);
    CHECK_INT(rp_pool_check(pool), 0);
    CHECK_COUNTS(pool, 2, 48);
    rp_free(b);
    rp_free(other);
    CHECK_INT(tu_err_count, 0);
    rp_set_error_handler(prev);
    tu_end_pool(pool);
}

static void test_wrong_pool(void)
{
    rp_pool *a = tu_pool_ex("owner", RP_POOL_CHECKED);
    rp_pool *b = tu_pool_ex("stranger", RP_POOL_CHECKED);
    rp_error_handler prev = rp_set_error_handler(tu_record_error);
    char *blk = rp_strdup(a, "payload", "t");
    char *r;
    tu_errors_reset();
    CHECK(rp_resize(b, blk, 100) == NULL);
    CHECK_ONE_ERROR(RP_EWRONGPOOL);
    CHECK(rp_resize_noexc(b, blk, 100) == NULL);
    CHECK_ONE_ERROR(RP_EWRONGPOOL);
    CHECK_STR(blk, "payload");
    CHECK_COUNTS(a, 1, 8);
    CHECK_COUNTS(b, 0, 0);
    CHECK_INT(rp_pool_check(a), 0);
    CHECK_INT(rp_pool_check(b), 0);
    /* through the owner, or with no pool, it works */
    r = rp_resize(a, blk, 100);
    CHECK_STR(r, "payload");
    r = rp_resize(NULL, r, 50);
    CHECK_STR(r, "payload");
    CHECK_INT(tu_err_count, 0);
    rp_free(r);
    rp_set_error_handler(prev);
    tu_end_pool(b);
    tu_end_pool(a);
}

/* A report names pools and tags, which are the program's bytes: the
   handler's message is one line that drives no terminal whatever they hold
   (ringpool.h), the bytes shown escaped as the CLI shows them (a newline as
   \n, ESC as \x1b, a backslash doubled). An overwritten header's finding
   gave the tag as it was, a wrong pool's the pool names. */
static void test_message_names_escaped(void)
{
    rp_pool *a = tu_pool_ex("own\ner", RP_POOL_CHECKED);
    rp_pool *b = tu_pool_ex("str\\an\x1b[2Jger", RP_POOL_CHECKED);
    rp_error_handler prev = rp_set_error_handler(tu_record_error);
    unsigned char *blk = rp_alloc(a, 32, "ta\ng\r\x1b[2J");
    unsigned char saved = blk[-8];
    tu_errors_reset();
    CHECK(rp_resize_noexc(b, blk, 100) == NULL);
    CHECK_INT(tu_err_count, 1);
    CHECK(strpbrk(tu_err_msg[0], "\n\r\x1b") == NULL);
    CHECK(strstr(tu_err_msg[0], "'own\\ner'") != NULL);
    CHECK(strstr(tu_err_msg[0], "'str\\\\an\\x1b[2Jger'") != NULL);
    CHECK_ONE_ERROR(RP_EWRONGPOOL);
    blk[-8] ^= 0x40;   /* the header's size word */
    rp_free(blk);
    CHECK_INT(tu_err_count, 1);
    CHECK(strpbrk(tu_err_msg[0], "\n\r\x1b") == NULL);
    CHECK(strstr(tu_err_msg[0], "tag ta\\ng\\r\\x1b[2J,") != NULL);
    CHECK_ONE_ERROR(RP_ECORRUPT);
    CHECK_INT(rp_pool_check(a), RP_ECORRUPT);
    CHECK(tu_err_count >= 1);
    for (int i = 0; i < tu_err_count && i < TU_MAX_ERRORS; i++)
        CHECK(strpbrk(tu_err_msg[i], "\n\r\x1b") == NULL);
    tu_errors_reset();
    blk[-8] = saved;
    CHECK_INT(rp_pool_check(a), 0);
    rp_free(blk);
    CHECK_INT(tu_err_count, 0);
    rp_set_error_handler(prev);
    tu_end_pool(b);
    tu_end_pool(a);
}

static void test_after_destroy(void)
{
    rp_pool *gone = tu_pool_ex("gone", RP_POOL_CHECKED);
    rp_pool *live = tu_pool_ex("live", RP_POOL_CHECKED);
    rp_error_handler prev = rp_set_error_handler(tu_record_error);
    void *stale = rp_alloc(gone, 48, "stale");
    void *mine = rp_alloc(live, 48, "mine");
    tu_watched = live;
    rp_pool_destroy(gone);
    tu_errors_reset();
    rp_free(stale);
    CHECK_ONE_ERROR(RP_EDESTROYED);
    CHECK(rp_resize_noexc(NULL, stale, 10) == NULL);
    CHECK_ONE_ERROR(RP_EDESTROYED);
    CHECK_COUNTS(live, 1, 48);
    CHECK_INT(rp_pool_check(live), 0);
    rp_free(mine);
    CHECK_INT(tu_err_count, 0);
    rp_set_error_handler(prev);
    tu_end_pool(live);
}

/* --- the default error handler prints one line and aborts */
static void child_default_error(const char *arg)
{
    rp_pool *pool = tu_pool_ex("doomed", RP_POOL_CHECKED);
    void *b = rp_alloc(pool, 8, "t");
    rp_free(b);
    if (strcmp(arg, "double-free") == 0)
        rp_free(b);
    else
        (void)rp_alloc_aligned_noexc(pool, 3, 8, "t");
    exit(3);
}

static void test_default_error_aborts(void)
{
    static const char *what[2] = {"double-free", "bad-align"};
    static const int code[2] = {RP_EDOUBLEFREE, RP_EALIGN};
    int i;
    for (i = 0; i < 2; i++) {
        tu_result r;
        const char *nl;
        tu_spawn("default-error", what[i], NULL, &r);
        CHECK(WIFSIGNALED(r.status));
        CHECK_INT(WTERMSIG(r.status), SIGABRT);
        nl = strchr(r.err, '\n');
        CHECK(nl != NULL && nl[1] == '\0'); /* exactly one line */
        CHECK(strstr(r.err, rp_strerror(code[i])) != NULL ||
              strstr(r.err, rp_error_name(code[i])) != NULL);
    }
}

static void test_error_table(void)
{
    struct { int code; const char *name; const char *msg; } t[] = {
#define ROW_(name, value, msg) {value, "RP_" #name, msg},
        RP_ERROR_MAP(ROW_)
#undef ROW_
    };
    size_t i, j, n = sizeof t / sizeof t[0];
    CHECK_EQ(n, 12);
    for (i = 0; i < n; i++) {
        CHECK(t[i].code < 0);
        CHECK(t[i].code >= RP_ERROR_MIN_);
        CHECK_STR(rp_error_name(t[i].code), t[i].name);
        CHECK_STR(rp_strerror(t[i].code), t[i].msg);
        for (j = 0; j < i; j++)
            CHECK(t[i].code != t[j].code);
    }
    /* the numbers are stable */
    CHECK_INT(RP_ENOMEM, -1);
    CHECK_INT(RP_EALIGN, -3);
    CHECK_INT(RP_EDOUBLEFREE, -5);
    CHECK_INT(RP_EBUSY, -12);
    CHECK_STR(rp_error_name(RP_OK), "RP_OK");
    CHECK(rp_strerror(RP_OK) != NULL);
    CHECK_STR(rp_strerror(1), "unknown error");
    CHECK_STR(rp_strerror(-13), "unknown error");
    CHECK_STR(rp_strerror(-1000000), "unknown error");
    CHECK_STR(rp_error_name(-13), "RP_UNKNOWN");
    CHECK_STR(rp_error_name(42), "RP_UNKNOWN");
}

/* Handlers are swapped and restored; NULL restores the default. */
static void test_handler_swap(void)
{
    rp_error_handler e0 = rp_set_error_handler(tu_record_error);
    rp_error_handler e1 = rp_set_error_handler(NULL);
    rp_oom_handler o0 = rp_set_oom_handler(tu_oom_escape);
    rp_oom_handler o1 = rp_set_oom_handler(NULL);
    CHECK(e1 == tu_record_error);
    CHECK(o1 == tu_oom_escape);
    CHECK(rp_set_error_handler(e0) != tu_record_error);
    CHECK(rp_set_oom_handler(o0) != tu_oom_escape);
}

int main(int argc, char **argv)
{
    static const tu_case cases[] = {
        {"double_free", test_double_free},
        {"foreign", test_foreign},
        {"underflow", test_underflow},
        {"message_names_escaped", test_message_names_escaped},
        {"wrong_pool", test_wrong_pool},
        {"after_destroy", test_after_destroy},
        {"default_error_aborts", test_default_error_aborts},
        {"error_table", test_error_table},
        {"handler_swap", test_handler_swap},
    };
    static const tu_child children[] = {
        {"default-error", child_default_error},
    };
    return tu_main(argc, argv, cases, TU_NCASES(cases), children,
                   TU_NCASES(children));
}
