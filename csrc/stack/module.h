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
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#ifndef AT_FDCWD
#define AT_FDCWD (-100)     /* <fcntl.h> is not included: it declares splice(2), a name unwind.c uses */
#endif

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

/* 1 when the file at path is the one of device dev (major:minor) and inode
   ino; stat(2) only. */
static inline int rpi_module_same_file(const char *path, unsigned long major, unsigned long minor,
                                       unsigned long ino)
{
    struct stat st;
    return stat(path, &st) == 0 && (unsigned long)st.st_ino == ino &&
           (unsigned long)major(st.st_dev) == major && (unsigned long)minor(st.st_dev) == minor;
}

/* The absolute path of the file mapped at addr, as /proc/self/maps gives
   it, into out[cap], when that path still names the mapped file (the same
   device and inode): 1; else 0 (nothing mapped there from a file, the file
   deleted or renamed, the path longer than cap). The kernel writes a
   newline of a path as the four characters \012 and nothing else escaped,
   so a path holding them is tried both ways. Read with system calls into
   a buffer on this stack (512 bytes): no malloc, no stdio, no lock. */
static inline int rpi_module_mapped_file(uintptr_t addr, char *out, size_t cap)
{
    /* O_RDONLY | O_CLOEXEC, x86-64's and the generic value */
    int fd = (int)syscall(SYS_openat, AT_FDCWD, "/proc/self/maps", 0, 02000000);
    if (fd < 0 || cap < 2)
        return fd >= 0 ? ((void)syscall(SYS_close, fd), 0) : 0;
    char buf[512];
    /* fields: 0 start, 1 end, 2 perms, 3 offset, 4 major, 5 minor, 6 inode,
       7 the spaces before the path, 8 the path */
    unsigned long v[7] = {0};
    int field = 0, hit = 0, found = 0, done = 0;
    size_t len = 0;
    ssize_t n;
    while (!done && (n = (ssize_t)syscall(SYS_read, fd, buf, sizeof buf)) > 0) {
        for (ssize_t i = 0; i < n && !done; i++) {
            char c = buf[i];
            if (c == '\n') {
                if (hit) {
                    done = 1;   /* the one line that holds addr */
                    if (field == 8 && len > 0 && len < cap && out[0] == '/') {
                        out[len] = '\0';
                        found = rpi_module_same_file(out, v[4], v[5], v[6]);
                        /* \012 read as the newline it stands for */
                        size_t w = 0;
                        for (size_t r = 0; !found && r < len; w++) {
                            int nl = r + 4 <= len && memcmp(out + r, "\\012", 4) == 0;
                            out[w] = nl ? '\n' : out[r];
                            r += nl ? 4 : 1;
                            if (r == len) {
                                out[w + 1] = '\0';
                                found = w + 1 < len && rpi_module_same_file(out, v[4], v[5], v[6]);
                            }
                        }
                    }
                }
                memset(v, 0, sizeof v);
                field = 0;
                len = 0;
                continue;
            }
            if (field < 7) {
                int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
                int sep = field == 0 ? c == '-' : field == 4 ? c == ':' : c == ' ';
                if (sep) {
                    if (field == 1)
                        hit = v[0] <= addr && addr < v[1];
                    field++;
                } else if (field == 6 && d >= 0 && d < 10) {
                    v[6] = v[6] * 10 + (unsigned long)d;
                } else if (field != 2 && field != 6 && d >= 0) {
                    v[field] = v[field] << 4 | (unsigned long)d;
                }
                continue;
            }
            if (field == 7 && c == ' ')
                continue;
            field = 8;
            if (hit && len < cap)
                out[len++] = c;
            else if (hit)
                len = cap;      /* too long: not taken */
        }
    }
    (void)syscall(SYS_close, fd);
    return found;
}

/* The address of an object's first PT_LOAD segment (0: none). */
static inline uintptr_t rpi_module_first_load(const struct dl_phdr_info *info)
{
    for (int i = 0; i < info->dlpi_phnum; i++)
        if (info->dlpi_phdr[i].p_type == PT_LOAD)
            return info->dlpi_addr + info->dlpi_phdr[i].p_vaddr;
    return 0;
}

/* The file of a dl_iterate_phdr entry: its name; for the main program (the
   first entry, which has none) the target of /proc/self/exe, read into
   exe[cap]; NULL for a later entry without a name (the vDSO) or when the
   link cannot be read. A relative name (dlopen("./x.so"), LD_PRELOAD=x/y.so)
   is relative to the working directory the object was loaded from, which
   the program may have left since, and a report is read from another: it
   becomes the absolute path of the file mapped there, read into exe[cap],
   when that path still names that file (else it stays as it is): one read
   of /proc/self/maps. */
static inline const char *rpi_module_path(const struct dl_phdr_info *info, int first,
                                          char *exe, size_t cap)
{
    if (info->dlpi_name != NULL && info->dlpi_name[0] != '\0') {
        /* a name without a '/' was found on a search path (or is the vDSO's) */
        uintptr_t at = info->dlpi_name[0] != '/' && strchr(info->dlpi_name, '/')
                           ? rpi_module_first_load(info) : 0;
        return at && rpi_module_mapped_file(at, exe, cap) ? exe : info->dlpi_name;
    }
    ssize_t n = first ? readlink("/proc/self/exe", exe, cap - 1) : -1;
    if (n <= 0)
        return NULL;
    exe[n] = '\0';
    return exe;
}

#endif /* RPI_MODULE_H */
