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
#endif
#endif

#endif
