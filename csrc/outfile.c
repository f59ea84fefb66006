/* outfile.c -- the one rule for writing a report file (outfile.h), shared by
 * libringpool, the interposer and the Python hooks. System calls and string
 * functions only: no malloc, no stdio, no locks. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1   /* built alone too (the Python hooks' extension) */
#endif
#include "outfile.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>      /* rename(2) only: no stream is used */
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---------------------------------------------------------- messages */
typedef struct msg {
    char  *b;
    size_t cap, n;
} msg;

static void add(msg *m, const char *s)
{
    for (; *s && m->n + 1 < m->cap; s++)
        m->b[m->n++] = *s;
    if (m->cap)
        m->b[m->n] = '\0';
}

/* The code point of the UTF-8 sequence at s (*len its bytes), or -1 when the byte
   at s starts no valid sequence (then *len is 1): no overlong forms, no
   surrogates, nothing past U+10FFFF. */
static long utf8_at(const unsigned char *s, size_t *len)
{
    *len = 1;
    unsigned c = s[0];
    if (c < 0x80)
        return (long)c;
    size_t n = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
    if (n == 0)
        return -1;
    unsigned long cp = c & (0x7Fu >> n);
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return -1;
        cp = cp << 6 | (s[i] & 0x3Fu);
    }
    if ((n == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
        return -1;
    *len = n;
    return (long)cp;
}

/* The characters audit/printable.py escapes (docs/cli.md, "Names in text output"): the
   backslash, C0, DEL, C1, and what displays as nothing or as a plain space: Unicode 15's
   format characters (Cf), the spaces but U+0020 (Zs), the line and paragraph separators,
   private-use code points (Co). */
static int escaped_cp(long cp)
{
    static const long ranges[][2] = {
        {0x00, 0x1F}, {0x5C, 0x5C}, {0x7F, 0xA0}, {0xAD, 0xAD}, {0x600, 0x605}, {0x61C, 0x61C},
        {0x6DD, 0x6DD}, {0x70F, 0x70F}, {0x890, 0x891}, {0x8E2, 0x8E2}, {0x1680, 0x1680},
        {0x180E, 0x180E}, {0x2000, 0x200F}, {0x2028, 0x202F}, {0x205F, 0x2064}, {0x2066, 0x206F},
        {0x3000, 0x3000}, {0xE000, 0xF8FF}, {0xFEFF, 0xFEFF}, {0xFFF9, 0xFFFB}, {0x110BD, 0x110BD},
        {0x110CD, 0x110CD}, {0x13430, 0x1343F}, {0x1BCA0, 0x1BCA3}, {0x1D173, 0x1D17A},
        {0xE0001, 0xE0001}, {0xE0020, 0xE007F}, {0xF0000, 0xFFFFD}, {0x100000, 0x10FFFD},
    };
    if (cp >= 0x20 && cp < 0x7F)
        return cp == '\\';
    for (size_t i = 0; i < sizeof ranges / sizeof ranges[0]; i++)
        if (cp >= ranges[i][0] && cp <= ranges[i][1])
            return 1;
    return 0;
}

const char *rpi_outfile_printable(char *out, size_t cap, const char *text)
{
    static const char hex[] = "0123456789abcdef";
    msg m = {out, cap, 0};
    if (cap)
        out[0] = '\0';
    const unsigned char *s = (const unsigned char *)text;
    while (*s) {
        size_t len;
        long cp = utf8_at(s, &len);
        char e[10];
        size_t k = 0;
        if (cp < 0) {                       /* a byte that is not UTF-8: as Python names it */
            memcpy(e, "\\udc", 4);
            e[4] = hex[s[0] >> 4];
            e[5] = hex[s[0] & 15];
            k = 6;
        } else if (!escaped_cp(cp)) {
            if (m.n + len + 1 > m.cap)
                break;
            memcpy(m.b + m.n, s, len);
            m.n += len;
            m.b[m.n] = '\0';
            s += len;
            continue;
        } else if (cp == '\\' || cp == '\n' || cp == '\r' || cp == '\t') {
            e[0] = '\\';
            e[1] = cp == '\\' ? '\\' : cp == '\n' ? 'n' : cp == '\r' ? 'r' : 't';
            k = 2;
        } else if (cp <= 0xFF) {
            e[0] = '\\';
            e[1] = 'x';
            e[2] = hex[cp >> 4];
            e[3] = hex[cp & 15];
            k = 4;
        } else if (cp <= 0xFFFF) {
            e[0] = '\\';
            e[1] = 'u';
            for (int i = 0; i < 4; i++)
                e[2 + i] = hex[(cp >> (12 - 4 * i)) & 15];
            k = 6;
        } else {                            /* as Python's repr: \UNNNNNNNN */
            e[0] = '\\';
            e[1] = 'U';
            for (int i = 0; i < 8; i++)
                e[2 + i] = hex[(cp >> (28 - 4 * i)) & 15];
            k = 10;
        }
        if (m.n + k + 1 > m.cap)            /* cut at a whole escape */
            break;
        memcpy(m.b + m.n, e, k);
        m.n += k;
        m.b[m.n] = '\0';
        s += len;
    }
    return out;
}

/* v in decimal at the end of buf[24]: its first digit */
static const char *decimal(char buf[24], unsigned long v)
{
    char *p = buf + 23;
    *p = '\0';
    do {
        *--p = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return p;
}

int rpi_outfile_say(char *why, size_t cap, int err, const char *a, const char *b, const char *c)
{
    msg m = {why, cap, 0};
    if (cap)
        why[0] = '\0';
    add(&m, a);
    if (b)
        add(&m, b);
    if (c)
        add(&m, c);
    return err;
}

const char *rpi_outfile_strerror(int err)
{
    switch (err) {
    case EPERM: return "Operation not permitted";
    case ENOENT: return "No such file or directory";
    case EIO: return "Input/output error";
    case ENXIO: return "No such device or address";
    case EBADF: return "Bad file descriptor";
    case ENOMEM: return "Cannot allocate memory";
    case EACCES: return "Permission denied";
    case EBUSY: return "Device or resource busy";
    case EEXIST: return "File exists";
    case EXDEV: return "Invalid cross-device link";
    case ENOTDIR: return "Not a directory";
    case EISDIR: return "Is a directory";
    case ENFILE: return "Too many open files in system";
    case EMFILE: return "Too many open files";
    case ETXTBSY: return "Text file busy";
    case EFBIG: return "File too large";
    case ENOSPC: return "No space left on device";
    case EROFS: return "Read-only file system";
    case EPIPE: return "Broken pipe";
    case ENAMETOOLONG: return "File name too long";
    case ELOOP: return "Too many levels of symbolic links";
    case EDQUOT: return "Disk quota exceeded";
    case EAGAIN: return "Resource temporarily unavailable";
    case EINTR: return "Interrupted system call";
    case EINVAL: return "Invalid argument";
    default: return "Unknown error";
    }
}

/* ------------------------------------------------------------ writes */
int rpi_outfile_write(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd pf = {fd, POLLOUT, 0};
            if (poll(&pf, 1, -1) < 0 && errno != EINTR)
                return errno;
            continue;
        }
        if (w < 0)
            return errno;
        if (w == 0)
            return EIO;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* ------------------------------------------------------------- umask */
mode_t rpi_outfile_umask(void)
{
    char buf[1024];
    int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 022;
    size_t n = 0;
    while (n < sizeof buf - 1) {     /* Umask is the second line: the first 1 KiB holds it */
        ssize_t r = read(fd, buf + n, sizeof buf - 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    buf[n] = '\0';
    const char *u = strstr(buf, "\nUmask:");
    if (!u)
        return 022;
    u += 7;
    while (*u == ' ' || *u == '\t')
        u++;
    if (*u < '0' || *u > '7')
        return 022;
    mode_t m = 0;
    for (; *u >= '0' && *u <= '7'; u++)
        m = (mode_t)(m * 8 + (mode_t)(*u - '0'));
    return m & 0777;
}

/* ----------------------------------------------------------- signals
   SIGPIPE and SIGXFSZ blocked in this thread from open to finish
   (outfile.h says why, and why not MSG_NOSIGNAL or SIG_IGN). */
static const int guarded[2] = {SIGPIPE, SIGXFSZ};

void rpi_sigguard_begin(rpi_sigguard *g)
{
    int saved = errno;
    sigset_t block, pend;
    sigemptyset(&block);
    for (int i = 0; i < 2; i++)
        sigaddset(&block, guarded[i]);
    g->masked = pthread_sigmask(SIG_BLOCK, &block, &g->mask) == 0;
    g->pending = 0;
    if (g->masked && sigpending(&pend) == 0)
        for (int i = 0; i < 2; i++)
            if (sigismember(&pend, guarded[i]) == 1)
                g->pending |= 1 << i;
    errno = saved;
}

/* Takes the signals the report's writes raised, then restores the mask. */
void rpi_sigguard_end(rpi_sigguard *g)
{
    if (!g->masked)
        return;
    int saved = errno;
    sigset_t pend;
    if (sigpending(&pend) == 0) {
        for (int i = 0; i < 2; i++) {
            if (sigismember(&pend, guarded[i]) != 1 || (g->pending & (1 << i)))
                continue;
            sigset_t one;
            sigemptyset(&one);
            sigaddset(&one, guarded[i]);
            struct timespec zero = {0, 0};
            while (sigtimedwait(&one, NULL, &zero) < 0 && errno == EINTR) {}
        }
    }
    pthread_sigmask(SIG_SETMASK, &g->mask, NULL);
    g->masked = 0;
    errno = saved;
}

/* fd moved above the standard streams' numbers (outfile.h), or -1 with
   errno set (fd then closed). */
static int above_std(int fd)
{
    if (fd < 0 || fd > 2)
        return fd;
    int moved = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    int e = errno;
    close(fd);
    errno = e;
    return moved;
}

/* ------------------------------------------------------------- rules */
int rpi_outfile_own_fd(const char *path)
{
    if (strcmp(path, "/dev/stdout") == 0)
        return 1;
    if (strcmp(path, "/dev/stderr") == 0)
        return 2;
    const char *num = NULL;
    if (strncmp(path, "/dev/fd/", 8) == 0)
        num = path + 8;
    else if (strncmp(path, "/proc/self/fd/", 14) == 0)
        num = path + 14;
    if (!num || !*num)
        return -1;
    long v = 0;
    for (const char *c = num; *c; c++) {
        if (*c < '0' || *c > '9' || v > 100000000)
            return -1;
        v = v * 10 + (*c - '0');
    }
    return (int)v;
}

static int is_stream_mode(mode_t mode) { return S_ISCHR(mode) || S_ISFIFO(mode); }

int rpi_outfile_is_stream(const char *path)
{
    struct stat st;
    return rpi_outfile_own_fd(path) >= 0 || (stat(path, &st) == 0 && is_stream_mode(st.st_mode));
}

/* What a refused path is, for the message. */
static const char *kind(mode_t mode)
{
    return S_ISREG(mode) ? "a regular file" : S_ISDIR(mode) ? "a directory"
         : S_ISSOCK(mode) ? "a socket" : S_ISBLK(mode) ? "a block device"
         : S_ISLNK(mode) ? "a symbolic link" : "not a regular file";
}

/* A character device or FIFO: opened without waiting (a FIFO without a
   reader fails with ENXIO at once), checked to be one still, then made
   blocking for the writes. */
static int open_stream(rpi_outfile *of, const char *path, char *why, size_t whycap)
{
    int fd = above_std(open(path, O_WRONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC));
    if (fd < 0) {
        int e = errno;
        if (e == ENXIO)
            return rpi_outfile_say(why, whycap, e, "it is a FIFO with no reader (not waited for)", NULL, NULL);
        return rpi_outfile_say(why, whycap, e, "cannot open it: ", rpi_outfile_strerror(e), NULL);
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !is_stream_mode(st.st_mode)) {
        close(fd);
        return rpi_outfile_say(why, whycap, EEXIST, "it changed while it was being opened (left as it is)",
                   NULL, NULL);
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
        fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    of->fd = fd;
    of->direct = 1;
    return 0;
}

static int open_dest(rpi_outfile *of, const char *path, char *tmp, size_t tmpcap, char *why,
                     size_t whycap)
{
    of->fd = -1;
    of->direct = 0;
    of->tmp = tmp;
    if (tmpcap)
        tmp[0] = '\0';
    if (whycap)
        why[0] = '\0';
    if (!path || !*path)
        return rpi_outfile_say(why, whycap, ENOENT, "the path is empty", NULL, NULL);
    int own = rpi_outfile_own_fd(path);
    if (own >= 0) {
        int fd = fcntl(own, F_DUPFD_CLOEXEC, 3);
        if (fd < 0 && errno != EBADF) {
            int e = errno;
            return rpi_outfile_say(why, whycap, e, "cannot duplicate its descriptor: ",
                       rpi_outfile_strerror(e), NULL);
        }
        if (fd < 0) {
            char num[24];
            return rpi_outfile_say(why, whycap, EBADF, "descriptor ", decimal(num, (unsigned long)own),
                       " is not open");
        }
        of->fd = fd;
        of->direct = 1;
        return 0;
    }
    struct stat st;
    if (lstat(path, &st) != 0) {
        int e = errno;
        if (e != ENOENT)
            return rpi_outfile_say(why, whycap, e, "cannot examine it: ", rpi_outfile_strerror(e), NULL);
    } else if (!S_ISREG(st.st_mode)) {
        struct stat target;
        int followed = S_ISLNK(st.st_mode) && stat(path, &target) == 0;
        if (is_stream_mode(st.st_mode) || (followed && is_stream_mode(target.st_mode)))
            return open_stream(of, path, why, whycap);
        if (S_ISLNK(st.st_mode))
            return rpi_outfile_say(why, whycap, EEXIST, "it is a symbolic link to ",
                       followed ? kind(target.st_mode) : "nothing",
                       " (not followed: only a link to a character device or FIFO is); "
                       "name the file itself");
        if (S_ISDIR(st.st_mode))
            return rpi_outfile_say(why, whycap, EISDIR, "it is a directory", NULL, NULL);
        return rpi_outfile_say(why, whycap, EEXIST, "it is ", kind(st.st_mode),
                   ", not a regular file, character device or FIFO (left as it is)");
    }
    /* a regular file or nothing: a temporary file beside it, its mode read
       now, before the file takes what may be the last free descriptor */
    of->mode = 0666 & ~rpi_outfile_umask();
    static atomic_uint serial;
    /* DIR/.rp-PID-N.tmp: a short name of its own in the file's directory (the
       file's name with a suffix could pass the file name limit) */
    const char *slash = strrchr(path, '/');
    size_t dl = slash ? (size_t)(slash - path) + 1 : 0;
    char pid[24], num[24];
    const char *p = decimal(pid, (unsigned long)getpid());
    for (int tries = 0; tries < 100; tries++) {
        const char *s = decimal(num, atomic_fetch_add_explicit(&serial, 1, memory_order_relaxed));
        size_t need = dl + 4 + strlen(p) + 1 + strlen(s) + 4 + 1;
        if (need > tmpcap)
            return rpi_outfile_say(why, whycap, ENAMETOOLONG, "the path is too long for its temporary file",
                       NULL, NULL);
        msg m = {tmp, tmpcap, dl};
        memcpy(tmp, path, dl);
        add(&m, ".rp-");
        add(&m, p);
        add(&m, "-");
        add(&m, s);
        add(&m, ".tmp");
        int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0 && errno == EEXIST)
            continue;               /* something is there (a planted link?): another name */
        if (fd >= 0 && (fd = above_std(fd)) < 0) {
            int e = errno;
            unlink(tmp);
            tmp[0] = '\0';
            return rpi_outfile_say(why, whycap, e, "no descriptor above the standard streams' for it: ",
                       rpi_outfile_strerror(e), NULL);
        }
        if (fd < 0) {
            int e = errno;
            tmp[0] = '\0';
            return rpi_outfile_say(why, whycap, e, "cannot create its temporary file: ",
                       rpi_outfile_strerror(e), NULL);
        }
        of->fd = fd;
        return 0;
    }
    tmp[0] = '\0';
    return rpi_outfile_say(why, whycap, EEXIST, "no free temporary name beside it", NULL, NULL);
}

int rpi_outfile_open(rpi_outfile *of, const char *path, char *tmp, size_t tmpcap, char *why,
                     size_t whycap)
{
    rpi_sigguard_begin(&of->guard);
    int rc = open_dest(of, path, tmp, tmpcap, why, whycap);
    if (rc != 0)
        rpi_sigguard_end(&of->guard);
    return rc;
}

static int finish(rpi_outfile *of, const char *path, int ok, char *why, size_t whycap)
{
    int rc = 0;
    if (of->fd < 0)
        return 0;
    if (ok && !of->direct && fchmod(of->fd, of->mode) != 0) {
        int e = errno;
        rc = rpi_outfile_say(why, whycap, e, "cannot set its mode: ", rpi_outfile_strerror(e), NULL);
    }
    if (close(of->fd) != 0 && ok && rc == 0 && errno != EINTR) {
        int e = errno;
        rc = rpi_outfile_say(why, whycap, e, "write failed: ", rpi_outfile_strerror(e), NULL);
    }
    of->fd = -1;
    if (of->direct)
        return rc;
    struct stat st;
    if (ok && rc == 0 && lstat(path, &st) == 0 && !S_ISREG(st.st_mode))
        rc = rpi_outfile_say(why, whycap, EEXIST, "it became ", kind(st.st_mode),
                 " while the report was written (left as it is)");
    if (ok && rc == 0 && rename(of->tmp, path) != 0) {
        int e = errno;
        rc = rpi_outfile_say(why, whycap, e, "cannot rename its temporary file over it: ",
                 rpi_outfile_strerror(e), NULL);
    }
    if (!ok || rc != 0)
        unlink(of->tmp);
    return rc;
}

int rpi_outfile_finish(rpi_outfile *of, const char *path, int ok, char *why, size_t whycap)
{
    int saved = errno;
    int rc = finish(of, path, ok, why, whycap);
    rpi_sigguard_end(&of->guard);
    errno = saved;
    return rc;
}
