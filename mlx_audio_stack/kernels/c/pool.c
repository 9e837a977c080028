/* The thread pool every kernel splits its work over: n_threads - 1 workers that spin briefly
 * and then sleep on a futex; the calling thread does part 0. One pool for the whole library, so
 * the products and the element-wise passes never compete for the cores. */
#define _GNU_SOURCE
#include <linux/futex.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

enum { SPIN_NS = 2000000 }; /* an idle worker spins this long before it sleeps */

static int n_threads = 1;
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static int pool_started;
static task_t pool_task;
static int pool_parts;
static int pool_gen;   /* bumped once per dispatched product */
static int pool_done;  /* workers finished with the current product */
static int pool_sleepers;
static int pool_hush;  /* bumped when a product goes to the BLAS: spinning workers sleep */

static void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000L + t.tv_nsec;
}

static void *worker(void *arg) {
    const int part = (int)(size_t)arg;
    int seen = 0; /* start_pool() zeroes pool_gen before any worker exists */
    for (;;) {
        long until = 0;
        int hush = __atomic_load_n(&pool_hush, __ATOMIC_RELAXED);
        for (unsigned spins = 0; __atomic_load_n(&pool_gen, __ATOMIC_SEQ_CST) == seen; spins++) {
            if ((spins & 255) != 255) {
                cpu_relax();
                continue;
            }
            const long t = now_ns();
            if (until == 0) until = t + SPIN_NS;
            /* spin on, unless the BLAS has started a product: its threads need the cores */
            if (t < until && __atomic_load_n(&pool_hush, __ATOMIC_RELAXED) == hush) continue;
            __atomic_add_fetch(&pool_sleepers, 1, __ATOMIC_SEQ_CST);
            if (__atomic_load_n(&pool_gen, __ATOMIC_SEQ_CST) == seen)
                syscall(SYS_futex, &pool_gen, FUTEX_WAIT_PRIVATE, seen, NULL, NULL, 0);
            __atomic_sub_fetch(&pool_sleepers, 1, __ATOMIC_SEQ_CST);
            until = 0;
            hush = __atomic_load_n(&pool_hush, __ATOMIC_RELAXED);
        }
        seen = __atomic_load_n(&pool_gen, __ATOMIC_SEQ_CST);
        if (part < pool_parts) run_part(&pool_task, part, pool_parts);
        __atomic_add_fetch(&pool_done, 1, __ATOMIC_SEQ_CST);
    }
    return NULL;
}

static void forget_pool_in_child(void) {
    /* fork() copies no threads: the child starts without workers and with the lock free. */
    pthread_mutex_init(&pool_lock, NULL);
    pool_started = 0;
    pool_sleepers = 0; /* the parent's sleeping workers are not here */
}

static int start_pool(void) {
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 1 << 20);
    __atomic_store_n(&pool_gen, 0, __ATOMIC_SEQ_CST);
    int started = 0;
    for (int p = 1; p < n_threads; p++) {
        pthread_t t;
        if (pthread_create(&t, &attr, worker, (void *)(size_t)p) != 0) break;
        started++;
    }
    pthread_attr_destroy(&attr);
    return started + 1;
}

void mas_pool_run(const task_t *t, size_t work) {
    const long most = t->n / t->granule;
    if (n_threads < 2 || work < THREAD_MIN_ELEMS || most < 2 ||
        pthread_mutex_trylock(&pool_lock) != 0) {
        t->fn(t->ctx, 0, t->n);
        return;
    }
    if (!pool_started) {
        static int registered;
        if (!registered) registered = pthread_atfork(NULL, NULL, forget_pool_in_child) == 0;
        n_threads = start_pool();
        pool_started = 1;
    }
    const int workers = n_threads - 1;
    pool_task = *t;
    pool_parts = most < n_threads ? (int)most : n_threads;
    __atomic_store_n(&pool_done, 0, __ATOMIC_SEQ_CST);
    __atomic_add_fetch(&pool_gen, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&pool_sleepers, __ATOMIC_SEQ_CST) > 0)
        syscall(SYS_futex, &pool_gen, FUTEX_WAKE_PRIVATE, workers, NULL, NULL, 0);
    run_part(t, 0, pool_parts);
    while (__atomic_load_n(&pool_done, __ATOMIC_SEQ_CST) < workers) cpu_relax();
    pthread_mutex_unlock(&pool_lock);
}

void mas_pool_set_threads(int threads) {
    n_threads = threads < 1 ? 1 : threads > MAX_THREADS ? MAX_THREADS : threads;
}

void mas_pool_hush(void) { __atomic_add_fetch(&pool_hush, 1, __ATOMIC_RELAXED); }
