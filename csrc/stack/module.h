/*
 * module.h -- what a report says of a loaded object: its load bias, the
 * address range of its PT_LOAD segments and its GNU build id (the symbolizer
 * checks the file on disk against it), read from the program headers that
 * dl_iterate_phdr hands out.
 *
 * Every stack report names its frames as (module, offset from the load
 * bias): the interposer (csrc/preload/report.c, and modules.c inside
 * dlclose), pools that record stacks (csrc/poolstack.c) and the Python hooks
 * (allocator/_pyhooks.c) describe their modules here. Header-only, static
 * inline: each of those builds compiles it in and no symbol is added.
 * rpi_module_describe allocates nothing and takes no lock, so the
 * interposer may call it from inside dlclose and while writing a report.
 */
#ifndef RPI_MODULE_H
#define RPI_MODULE_H

#include <link.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

typedef struct rpi_module {
    uintptr_t base;             /* load bias: an address minus base is its address in the file */
    uintptr_t lo, hi;           /* [lo, hi) spans the PT_LOAD segments (lo > hi: none) */
    unsigned char build_id[64];
    size_t build_id_len;        /* 0: none */
} rpi_module;

/* *m for the object info describes. */
static inline void rpi_module_describe(const struct dl_phdr_info *info, rpi_module *m)
{
    m->base = info->dlpi_addr;
    m->lo = UINTPTR_MAX;
    m->hi = 0;
    m->build_id_len = 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_LOAD) {
            uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
            if (lo < m->lo)
                m->lo = lo;
            if (lo + ph->p_memsz > m->hi)
                m->hi = lo + ph->p_memsz;
        } else if (ph->p_type == PT_NOTE && m->build_id_len == 0) {
            const unsigned char *p = (const unsigned char *)(info->dlpi_addr + ph->p_vaddr);
            const unsigned char *end = p + ph->p_memsz;
            /* each note: header, name and descriptor, the last two padded to
               4 bytes; sizes are checked against what is left, never by
               forming a pointer past the segment */
            while ((size_t)(end - p) >= sizeof(ElfW(Nhdr))) {
                const ElfW(Nhdr) *nh = (const ElfW(Nhdr) *)(const void *)p;
                size_t left = (size_t)(end - p) - sizeof *nh;
                size_t name = ((size_t)nh->n_namesz + 3u) & ~(size_t)3u;
                size_t desc = ((size_t)nh->n_descsz + 3u) & ~(size_t)3u;
                if (name > left || nh->n_descsz > left - name)
                    break;
                const unsigned char *d = p + sizeof *nh + name;
                if (nh->n_type == NT_GNU_BUILD_ID && nh->n_namesz == 4 &&
                    memcmp(p + sizeof *nh, "GNU", 4) == 0 && nh->n_descsz <= sizeof m->build_id) {
                    memcpy(m->build_id, d, nh->n_descsz);
                    m->build_id_len = nh->n_descsz;
                    break;
                }
                if (desc > left - name)
                    break;
                p = d + desc;
            }
        }
    }
}

/* The build id in lower-case hex into out (room for 2 * 64 + 1 bytes),
   NUL-terminated; its length (0: no build id). */
static inline size_t rpi_module_build_id_hex(const rpi_module *m, char *out)
{
    static const char digits[] = "0123456789abcdef";
    size_t n = 0;
    for (size_t i = 0; i < m->build_id_len; i++) {
        out[n++] = digits[m->build_id[i] >> 4];
        out[n++] = digits[m->build_id[i] & 15];
    }
    out[n] = '\0';
    return n;
}

/* The file of a dl_iterate_phdr entry: its name; for the main program (the
   first entry, which has none) the target of /proc/self/exe, read into
   exe[cap]; NULL for a later entry without a name (the vDSO) or when the
   link cannot be read. */
static inline const char *rpi_module_path(const struct dl_phdr_info *info, int first,
                                          char *exe, size_t cap)
{
    if (info->dlpi_name != NULL && info->dlpi_name[0] != '\0')
        return info->dlpi_name;
    ssize_t n = first ? readlink("/proc/self/exe", exe, cap - 1) : -1;
    if (n <= 0)
        return NULL;
    exe[n] = '\0';
    return exe;
}

#endif /* RPI_MODULE_H */
