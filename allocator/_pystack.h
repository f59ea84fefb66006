/* The capsule allocator._pystack hands to allocator._pyhooks: csrc/stack/'s
 * calls (see csrc/stack/stack.h for what each does). */
#ifndef RP_PYSTACK_H
#define RP_PYSTACK_H

#include <stddef.h>
#include <stdint.h>

#define RP_PYSTACK_CAPSULE "allocator._pystack._api"
#define RP_PYSTACK_API_VERSION 1

typedef struct {
    int version;
    int (*init)(void);
    uint32_t (*capture)(int depth, uintptr_t skip_lo, uintptr_t skip_hi);
    size_t (*get)(uint32_t id, const uintptr_t **frames);
    int (*function_range)(uintptr_t pc, uintptr_t *lo, uintptr_t *hi);
    void (*lock)(void);
    void (*unlock)(void);
} rp_pystack_api;

#endif
