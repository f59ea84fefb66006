/* alarm_every.h -- SIGALRM delivered to handler every usec microseconds
 * (SA_RESTART, nothing masked while it runs): the signal programs
 * (sigalloc.c, sigmix.c) allocate and free from it while the main loop
 * does the same. */
#ifndef ALARM_EVERY_H
#define ALARM_EVERY_H

#include <signal.h>
#include <string.h>
#include <sys/time.h>

static void alarm_every(void (*handler)(int), long usec)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it = {{0, usec}, {0, usec}};
    setitimer(ITIMER_REAL, &it, NULL);
}

#endif
