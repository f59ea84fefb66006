/* Four threads hammer malloc/free (mixed sizes, frees of other threads'
   blocks through a shared exchange) and each leaks exactly PER_THREAD_LEAK
   blocks of LEAK_SIZE bytes at one call site (LEAK-T). Counts must be exact. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#define THREADS 4
#define ROUNDS 200000
#define PER_THREAD_LEAK 250
#define LEAK_SIZE 48
#define SLOTS 1024

static _Atomic(void *) exchange[SLOTS];
static void *leaked[THREADS][PER_THREAD_LEAK];

static void *worker(void *arg)
{
    uintptr_t id = (uintptr_t)arg;
    uint32_t x = (uint32_t)id * 2654435761u + 1;
    void *local[64] = {0};
    for (int r = 0; r < ROUNDS; r++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        size_t size = 1 + (x % 512);
        void *p = malloc(size);
        if (!p)
            abort();
        if (x & 1) {
            /* swap through the shared exchange: the block we get back was
               usually allocated by another thread */
            void *old = atomic_exchange(&exchange[(x >> 8) % SLOTS], p);
            free(old);
        } else {
            unsigned k = (x >> 8) % 64;
            free(local[k]);
            local[k] = p;
        }
    }
    for (int k = 0; k < 64; k++)
        free(local[k]);
    for (int i = 0; i < PER_THREAD_LEAK; i++)
        leaked[id][i] = malloc(LEAK_SIZE); /* LEAK-T */
    return NULL;
}

int main(void)
{
    pthread_t t[THREADS];
    for (uintptr_t i = 0; i < THREADS; i++)
        if (pthread_create(&t[i], NULL, worker, (void *)i) != 0)
            return 2;
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < SLOTS; i++)
        free(atomic_load(&exchange[i]));
    static const char msg[] = "threads done\n";
    return write(1, msg, sizeof msg - 1) < 0;
}
