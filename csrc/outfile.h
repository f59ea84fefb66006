/* outfile.h -- where a report file may be written, and how: the one rule of
 * the library's reports (report.c), the interposer's (preload/report.c) and
 * the Python hooks' (allocator/_pyhooks.c), which all compile outfile.c.
 *
 *   - /dev/stdout, /dev/stderr, /dev/fd/N and /proc/self/fd/N are that
 *     descriptor of the process (duplicated), written straight in whatever
 *     it is (terminal, pipe, file);
 *   - an existing character device or FIFO, also reached through a symbolic
 *     link (/dev/tty), is opened and written straight in, never replaced; a
 *     FIFO without a reader is refused at once, never waited for;
 *   - a regular file, or nothing, is replaced atomically: the report goes to
 *     a new temporary file beside it (PATH.tmp.PID.N), created exclusively
 *     without following a link (O_CREAT|O_EXCL|O_NOFOLLOW, mode 0600), given
 *     the umask's mode (0666 & ~umask) once complete, then renamed over the
 *     path -- only if the path is then still a regular file or nothing;
 *   - anything else (a symbolic link to a regular file, to a directory or to
 *     nothing; a directory; a socket; a block device) is refused and left as
 *     it is.
 *
 * No malloc, no stdio, no locks: open, fstat, lstat, stat, write, fchmod,
 * rename, unlink, close and string functions only, on the caller's buffers,
 * so the interposer may call it at exit or from a signal handler. Each
 * refusal or failure returns an errno value and writes into the caller's
 * buffer why, as one phrase that does not name the path (the caller does). */
#ifndef RPI_OUTFILE_H
#define RPI_OUTFILE_H

#include <stddef.h>
#include <sys/types.h>

#define RPI_OUTFILE_API __attribute__((visibility("hidden")))

typedef struct rpi_outfile {
    int   fd;       /* where the report is written; -1 once finished */
    int   direct;   /* 1: fd is the destination itself; 0: fd is the temporary file tmp */
    char *tmp;      /* the caller's buffer: the temporary file's name */
} rpi_outfile;

/* The descriptor a path names (/dev/stdout 1, /dev/stderr 2, /dev/fd/N and
   /proc/self/fd/N N), or -1. */
RPI_OUTFILE_API int rpi_outfile_own_fd(const char *path);

/* 1 when a report to path would be written straight in (a descriptor's
   name, or an existing character device or FIFO, through links too). */
RPI_OUTFILE_API int rpi_outfile_is_stream(const char *path);

/* Opens where a report to path goes (the rules above): 0 and *of ready for
   writing to of->fd, or an errno value with why filled. tmp (tmpcap bytes,
   at least strlen(path) + 40) receives the temporary file's name. */
RPI_OUTFILE_API int rpi_outfile_open(rpi_outfile *of, const char *path, char *tmp, size_t tmpcap,
                                     char *why, size_t whycap);

/* Ends what rpi_outfile_open began. With ok set (everything was written):
   the temporary file gets the umask's mode, is closed, and is renamed over
   path if that is still a regular file or nothing. With ok clear (the
   report failed): closed, and the temporary file removed. 0, or an errno
   value with why filled (the temporary file is then removed). */
RPI_OUTFILE_API int rpi_outfile_finish(rpi_outfile *of, const char *path, int ok, char *why,
                                       size_t whycap);

/* The process's umask, read without changing it (umask(2) is process-wide
   and would race with other threads creating files): the Umask line of
   /proc/self/status, else 022. */
RPI_OUTFILE_API mode_t rpi_outfile_umask(void);

/* A short text for an errno value (strerror's, without its locale or
   buffer: usable at exit and in signal handlers). */
RPI_OUTFILE_API const char *rpi_outfile_strerror(int err);

#endif
