/* C++ allocations attributed to the caller of operator new, not to
   libstdc++: calls operator new / new[] (looked up with RTLD_DEFAULT, so the
   interposer's definitions when it is loaded) from C, without needing a C++
   compiler. After a failed nothrow new, the next malloc must still get its
   own call site. Exit 77 when libstdc++ is not installed. */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

typedef void *(*new_fn)(size_t);
typedef void *(*new_nothrow_fn)(size_t, const void *);
typedef void (*delete_fn)(void *);

static void *keep[4];

int main(void)
{
    if (!dlopen("libstdc++.so.6", RTLD_NOW | RTLD_GLOBAL)) {
        fprintf(stderr, "cxx: libstdc++.so.6 not found\n");
        return 77;
    }
    new_fn op_new, op_new_arr;
    new_nothrow_fn op_new_nothrow;
    delete_fn op_delete;
    *(void **)&op_new = dlsym(RTLD_DEFAULT, "_Znwm");
    *(void **)&op_new_arr = dlsym(RTLD_DEFAULT, "_Znam");
    *(void **)&op_new_nothrow = dlsym(RTLD_DEFAULT, "_ZnwmRKSt9nothrow_t");
    *(void **)&op_delete = dlsym(RTLD_DEFAULT, "_ZdlPv");
    const void *nothrow = dlsym(RTLD_DEFAULT, "_ZSt7nothrow");
    if (!op_new || !op_new_arr || !op_new_nothrow || !op_delete || !nothrow)
        return 2;
    for (int i = 0; i < 100; i++)
        op_delete(op_new(32));
    keep[0] = op_new(40); /* LEAK-NEW */
    keep[1] = op_new_arr(80); /* LEAK-NEWARR */
    volatile size_t huge = SIZE_MAX / 2;
    if (op_new_nothrow(huge, nothrow) != NULL)
        return 3;
    keep[2] = malloc(11); /* LEAK-AFTER */
    puts("cxx ok");
    return 0;
}
