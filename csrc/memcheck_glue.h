/* memcheck_glue.h -- valgrind's client requests, where its header exists
 * (internal; included by pool.c and stack/unwind.c, which the interposer and
 * the Python extension build too).
 *
 * The header comes with Debian's valgrind package, which building does not
 * need (SYS_PACKAGES_BUILD): without it this file defines nothing, and the
 * code that asks memcheck is compiled out (#ifdef RPI_HAVE_MEMCHECK_H).
 */
#ifndef RPI_MEMCHECK_GLUE_H
#define RPI_MEMCHECK_GLUE_H

#if defined(__has_include)
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define RPI_HAVE_MEMCHECK_H 1

/* 1 under valgrind's memcheck: its V-bits request answers (1 for an
   addressable byte), every other tool's and a native run's answer 0.
   Natively: the client requests' few instructions. */
static inline int rpi_under_memcheck(void)
{
    unsigned char byte = 0, vbits;
    return RUNNING_ON_VALGRIND && VALGRIND_GET_VBITS(&byte, &vbits, 1) != 0;
}
#endif
#endif

#endif
