/* One-time buffers of the C library: a locale, the static buffers of
 * getpwuid and getgrgid, the time zone, stdio's buffer; and one leak of the
 * program's own (LEAK-S), the only row a default report may leave
 * unsuppressed. */
#include <grp.h>
#include <locale.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static void *kept;

int main(void)
{
    setlocale(LC_ALL, "C.UTF-8");
    struct passwd *p = getpwuid(0);
    struct group *g = getgrgid(0);
    time_t t = 0;
    struct tm *tm = localtime(&t);
    kept = malloc(33); /* LEAK-S */
    printf("%s %s %d\n", p ? "user" : "-", g ? "group" : "-", tm ? 1 : 0);
    return 0;
}
