/* fchmod_intrude.h -- a test program's own fchmod, which the report writers
 * call on a finished report (the program's symbols come before libc's): with
 * intrude set, it first writes a line to descriptor 2, as another thread of a
 * program that closed its stderr could while a report is written. Included by
 * tests/c/test_report_files.c (the library's reports) and
 * tests/preload/hostile.c (the interposer's); a report whose descriptor took
 * number 2 would then hold that line. */
#ifndef FCHMOD_INTRUDE_H
#define FCHMOD_INTRUDE_H

#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static int intrude;

int fchmod(int fd, mode_t mode)
{
    if (intrude) {
        static const char line[] = "the program's own line on descriptor 2\n";
        ssize_t w = write(2, line, sizeof line - 1);
        (void)w;
    }
    return (int)syscall(SYS_fchmod, fd, mode);
}

#endif
