/* Few-row float32 matrix products for MLX's CPU backend on Linux.
 *
 * MLX's CPU matmul hands every product to cblas_sgemm, even one row (a decoder step) or five
 * (beam search). OpenBLAS 0.3.21 (Debian 12) packs the whole weight into a buffer before
 * multiplying, which at least doubles the memory traffic of a product that is nothing but
 * memory traffic: a step must stream every weight once. mlx_audio_stack/_blas.py compiles
 * this file and loads it into the global symbol scope before the BLAS and before MLX, so MLX's
 * calls to cblas_sgemm land here. Products of at most MAS_ROWS rows are computed here, reading
 * each weight element once for all rows, split across a small pool of threads; everything else
 * goes to the BLAS unchanged.
 *
 * Each output element is summed in the same order whatever the row count, the thread count and
 * the split, so a row's result does not depend on how many rows are computed with it.
 */
#define _GNU_SOURCE /* RTLD_NEXT */
#include <dlfcn.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

enum { ROW_MAJOR = 101, NO_TRANS = 111, TRANS = 112 };
enum { MAS_ROWS = 8, MAX_THREADS = 16, VL = 16, ACC_FLOATS = 8192, SPLIT = 64 };
enum { SPIN_NS = 2000000 };         /* an idle worker spins this long before it sleeps */
enum { THREAD_MIN_ELEMS = 65536 }; /* smaller weights are done by the calling thread alone */

typedef void (*sgemm_fn)(int, int, int, int, int, int, float, const float *, int,
                         const float *, int, float, float *, int);

static sgemm_fn real_sgemm;
static int max_rows;
static int n_threads = 1;
static long n_calls;

/* 16 floats; loads and stores through it may be unaligned. */
typedef float vf __attribute__((vector_size(64), __may_alias__, aligned(4)));

static inline float hsum(vf v) {
#if defined(__AVX512F__)
    return _mm512_reduce_add_ps((__m512)v);
#else
    float t[VL];
    memcpy(t, &v, sizeof t);
    for (int w = VL / 2; w > 0; w /= 2)
        for (int i = 0; i < w; i++) t[i] += t[i + w];
    return t[0];
#endif
}

typedef struct {
    int M, N, K, tb;
    float alpha, beta;
    const float *x; /* the M rows of op(A), packed M x K */
    const float *B;
    int ldb;
    float *C;
    int ldc;
} job_t;

static inline void put(const job_t *j, float *c, float s) {
    *c = j->beta == 0.0f ? j->alpha * s : j->alpha * s + j->beta * *c; /* C may be garbage */
}

/* B stored N x K (an nn.Linear weight, tb == TRANS): C[r][n] = dot(B[n], x_r). R rows of B at
 * once, each row's K products in VL lanes, then one horizontal sum per output. */
#define T_ROWS(MM) ((MM) <= 4 ? 4 : 2)
#define DEF_T(MM)                                                                          \
    static void kt_##MM(const job_t *j, int n0, int n1) {                                  \
        enum { R = T_ROWS(MM) };                                                           \
        const int K = j->K, Kv = K - K % VL;                                               \
        const float *x = j->x;                                                             \
        for (int n = n0; n < n1; n += R) {                                                 \
            const int nr = n1 - n < R ? n1 - n : R;                                        \
            const float *b[R];                                                             \
            for (int i = 0; i < R; i++) b[i] = j->B + (size_t)(n + (i < nr ? i : 0)) * j->ldb; \
            vf a[MM][R];                                                                   \
            for (int r = 0; r < MM; r++)                                                   \
                for (int i = 0; i < R; i++) a[r][i] = (vf){0};                             \
            for (int k = 0; k < Kv; k += VL) {                                             \
                vf v[R];                                                                   \
                for (int i = 0; i < R; i++) v[i] = *(const vf *)(b[i] + k);                \
                for (int r = 0; r < MM; r++) {                                             \
                    const vf xv = *(const vf *)(x + (size_t)r * K + k);                    \
                    for (int i = 0; i < R; i++) a[r][i] += v[i] * xv;                      \
                }                                                                          \
            }                                                                              \
            for (int r = 0; r < MM; r++)                                                   \
                for (int i = 0; i < nr; i++) {                                             \
                    float s = hsum(a[r][i]);                                               \
                    for (int k = Kv; k < K; k++) s += b[i][k] * x[(size_t)r * K + k];      \
                    put(j, j->C + (size_t)r * j->ldc + n + i, s);                          \
                }                                                                          \
        }                                                                                  \
    }

/* B stored K x N (tb == NO_TRANS, e.g. Whisper's output projection kept (C, n_vocab)):
 * C[r][cols] = sum_k x_r[k] B[k][cols], over column blocks whose M sums stay in L1, eight
 * rows of B streamed at once. */
#define N_GROUP 8
#define DEF_N(MM)                                                                          \
    static void kn_##MM(const job_t *j, int n0, int n1) {                                  \
        enum { G = N_GROUP, CB0 = ACC_FLOATS / (MM) / VL * VL, CB = CB0 < 4096 ? CB0 : 4096 }; \
        const int K = j->K;                                                                \
        const float *x = j->x;                                                             \
        const size_t ldb = (size_t)j->ldb;                                                 \
        float acc[(MM) * CB] __attribute__((aligned(64)));                                 \
        for (int c0 = n0; c0 < n1; c0 += CB) {                                             \
            const int w = n1 - c0 < CB ? n1 - c0 : CB, wv = w - w % VL;                    \
            memset(acc, 0, sizeof acc);                                                    \
            int k = 0;                                                                     \
            for (; k + G <= K; k += G) {                                                   \
                const float *b[G];                                                         \
                float xs[MM][G];                                                           \
                for (int i = 0; i < G; i++) b[i] = j->B + (size_t)(k + i) * ldb + c0;      \
                for (int r = 0; r < MM; r++)                                               \
                    for (int i = 0; i < G; i++) xs[r][i] = x[(size_t)r * K + k + i];       \
                for (int c = 0; c < wv; c += VL) {                                         \
                    vf v[G];                                                               \
                    for (int i = 0; i < G; i++) v[i] = *(const vf *)(b[i] + c);            \
                    for (int r = 0; r < MM; r++) {                                         \
                        vf *o = (vf *)(acc + r * CB + c), s = *o;                          \
                        for (int i = 0; i < G; i++) s += xs[r][i] * v[i];                  \
                        *o = s;                                                            \
                    }                                                                      \
                }                                                                          \
                for (int c = wv; c < w; c++)                                               \
                    for (int r = 0; r < MM; r++) {                                         \
                        float s = acc[r * CB + c];                                         \
                        for (int i = 0; i < G; i++) s += xs[r][i] * b[i][c];               \
                        acc[r * CB + c] = s;                                               \
                    }                                                                      \
            }                                                                              \
            for (; k < K; k++) {                                                           \
                const float *b0 = j->B + (size_t)k * ldb + c0;                             \
                for (int r = 0; r < MM; r++) {                                             \
                    const float xs = x[(size_t)r * K + k];                                 \
                    for (int c = 0; c < w; c++) acc[r * CB + c] += xs * b0[c];             \
                }                                                                          \
            }                                                                              \
            for (int r = 0; r < MM; r++)                                                   \
                for (int c = 0; c < w; c++)                                                \
                    put(j, j->C + (size_t)r * j->ldc + c0 + c, acc[r * CB + c]);           \
        }                                                                                  \
    }

DEF_T(1) DEF_T(2) DEF_T(3) DEF_T(4) DEF_T(5) DEF_T(6) DEF_T(7) DEF_T(8)
DEF_N(1) DEF_N(2) DEF_N(3) DEF_N(4) DEF_N(5) DEF_N(6) DEF_N(7) DEF_N(8)

typedef void (*kernel_fn)(const job_t *, int, int);
static const kernel_fn KT[MAS_ROWS + 1] = {0, kt_1, kt_2, kt_3, kt_4, kt_5, kt_6, kt_7, kt_8};
static const kernel_fn KN[MAS_ROWS + 1] = {0, kn_1, kn_2, kn_3, kn_4, kn_5, kn_6, kn_7, kn_8};

/* A piece of work the pool splits: fn(ctx, lo, hi) over [0, n), parts cut at multiples of
 * `granule` (the last part takes the rest). */
typedef struct {
    void (*fn)(const void *ctx, long lo, long hi);
    const void *ctx;
    long n, granule;
} task_t;

static inline void run_part(const task_t *t, int part, int parts) {
    const long per = (t->n / parts + t->granule - 1) / t->granule * t->granule;
    const long lo = part * per, hi = part == parts - 1 ? t->n : (part + 1) * per;
    if (lo < hi && lo < t->n) t->fn(t->ctx, lo, hi < t->n ? hi : t->n);
}

static void product_part(const void *ctx, long lo, long hi) {
    const job_t *j = ctx;
    (j->tb == TRANS ? KT : KN)[j->M](j, (int)lo, (int)hi);
}

/* ---- the pool: n_threads - 1 workers; the calling thread does part 0 ---- */
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

/* Run the task, split over the pool when it is big enough (`work` >= THREAD_MIN_ELEMS, at
 * least two granules) and the pool is free; otherwise on the calling thread alone. */
static void run(const task_t *t, size_t work) {
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

void cblas_sgemm(int order, int ta, int tb, int M, int N, int K, float alpha, const float *A,
                 int lda, const float *B, int ldb, float beta, float *C, int ldc);

/* Called once from Python, before MLX runs anything: the BLAS to pass other products to
 * (already loaded with RTLD_GLOBAL), the most rows computed here (0 to 8) and the threads to
 * use (the caller's included). Returns 0 on success. */
int mas_gemv_init(const char *blas_path, int rows, int threads) {
    void *h = dlopen(blas_path, RTLD_NOW | RTLD_GLOBAL | RTLD_NOLOAD);
    if (h == NULL) h = dlopen(blas_path, RTLD_NOW | RTLD_GLOBAL);
    if (h == NULL) return 1;
    sgemm_fn g = (sgemm_fn)dlsym(h, "cblas_sgemm");
    if (g == NULL || (void *)g == (void *)&cblas_sgemm) return 2;
    max_rows = rows < 0 ? 0 : rows > MAS_ROWS ? MAS_ROWS : rows;
    n_threads = threads < 1 ? 1 : threads > MAX_THREADS ? MAX_THREADS : threads;
    real_sgemm = g;
    return 0;
}

/* How many products were computed here so far (a check that MLX's calls land here). */
long mas_gemv_forwarded(void) { return __atomic_load_n(&n_calls, __ATOMIC_RELAXED); }

void cblas_sgemm(int order, int ta, int tb, int M, int N, int K, float alpha, const float *A,
                 int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    if (real_sgemm == NULL) { /* not initialised: pass everything to the next library's */
        real_sgemm = (sgemm_fn)dlsym(RTLD_NEXT, "cblas_sgemm");
        if (real_sgemm == NULL) return;
    }
    if (order != ROW_MAJOR || M < 1 || M > max_rows || N < 1 || K < 1 ||
        (ta != NO_TRANS && ta != TRANS) || (tb != NO_TRANS && tb != TRANS)) {
        /* A product big enough for the BLAS's threads: the pool's spinning workers would take
         * their cores (on 2 cores an ECAPA pass took 2x as long), so they go to sleep now. */
        if ((double)M * N * K >= (double)(1 << 20)) __atomic_add_fetch(&pool_hush, 1, __ATOMIC_RELAXED);
        real_sgemm(order, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    /* Pack op(A)'s M rows contiguously (A may be stored transposed). */
    float stack_x[MAS_ROWS * 1024];
    float *x = (size_t)M * K <= sizeof stack_x / sizeof *stack_x ? stack_x
                                                                 : malloc(sizeof(float) * (size_t)M * K);
    if (x == NULL) {
        real_sgemm(order, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    for (int r = 0; r < M; r++) {
        float *xr = x + (size_t)r * K;
        if (ta == NO_TRANS)
            memcpy(xr, A + (size_t)r * lda, sizeof(float) * (size_t)K);
        else
            for (int k = 0; k < K; k++) xr[k] = A[(size_t)k * lda + r];
    }
    const job_t j = {M, N, K, tb, alpha, beta, x, B, ldb, C, ldc};
    const task_t t = {product_part, &j, N, SPLIT};
    run(&t, (size_t)N * K);
    if (x != stack_x) free(x);
    __atomic_fetch_add(&n_calls, 1, __ATOMIC_RELAXED);
}

/* ---- element-wise work MLX's CPU backend does with scalar exp/erf ---- */
typedef int vi __attribute__((vector_size(64), __may_alias__, aligned(4)));

static inline vf vselect(vi mask, vf a, vf b) { return (vf)((mask & (vi)a) | (~mask & (vi)b)); }

/* exp(x) for x <= 0 as in a softmax (or any x in [-87, 88]): 2^n e^r with n = round(x / ln 2),
 * r = x - n ln 2 (Cody-Waite, two constants) and a degree-7 Taylor polynomial on
 * [-ln2/2, ln2/2]: about 1e-7 relative error. Below -87 it gives ~1e-38, not 0. */
static inline vf vexp(vf x) {
    const vf lo = (vf){0} - 87.0f, hi = (vf){0} + 88.0f;
    x = vselect(x < lo, lo, x);
    x = vselect(x > hi, hi, x);
    const vi ni = __builtin_convertvector(x * 1.44269504f + 1024.5f, vi) - 1024;
    const vf n = __builtin_convertvector(ni, vf);
    const vf r = x - n * 0.693359375f - n * -2.12194440e-4f;
    vf p = r * (1.0f / 5040) + (1.0f / 720);
    p = p * r + (1.0f / 120);
    p = p * r + (1.0f / 24);
    p = p * r + (1.0f / 6);
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    return p * (vf)((ni + 127) << 23);
}

static inline float sexp(float x) { /* the same for one float (row tails) */
    vf v = (vf){0} + x;
    return vexp(v)[0];
}

typedef struct {
    float *a;
    long cols;
} rows_t;

static void softmax_row(float *row, long cols) {
    const long cv = cols - cols % VL;
    float m = row[0];
    if (cv > 0) {
        vf mv = *(const vf *)row;
        for (long c = VL; c < cv; c += VL) {
            const vf v = *(const vf *)(row + c);
            mv = vselect(v > mv, v, mv);
        }
        for (int l = 0; l < VL; l++) m = mv[l] > m ? mv[l] : m;
    }
    for (long c = cv; c < cols; c++) m = row[c] > m ? row[c] : m;
    vf sv = (vf){0};
    for (long c = 0; c < cv; c += VL) {
        const vf e = vexp(*(const vf *)(row + c) - m);
        *(vf *)(row + c) = e;
        sv += e;
    }
    float sum = hsum(sv);
    for (long c = cv; c < cols; c++) sum += row[c] = sexp(row[c] - m);
    const float inv = 1.0f / sum;
    for (long c = 0; c < cv; c += VL) *(vf *)(row + c) *= inv;
    for (long c = cv; c < cols; c++) row[c] *= inv;
}

static void softmax_part(const void *ctx, long lo, long hi) {
    const rows_t *t = ctx;
    for (long i = lo; i < hi; i++) softmax_row(t->a + i * t->cols, t->cols);
}

/* Softmax over each row of the contiguous (rows, cols) float32 `a`, in place. */
void mas_softmax_rows(float *a, long rows, long cols) {
    if (rows < 1 || cols < 1) return;
    const rows_t r = {a, cols};
    const task_t t = {softmax_part, &r, rows, 1};
    run(&t, (size_t)rows * cols);
}

/* Exact (erf) GELU: x >= 0: x - h, x < 0: h, with h = 0.5 x (1 - erf(|x| / sqrt 2)) and erf
 * from Abramowitz & Stegun 7.1.26 (|error| <= 1.5e-7), as cpu_ops._gelu_block computes it. */
static inline vf vgelu(vf v) {
    const vf z = vselect(v < 0, -v, v) * 0.70710678118654752f;
    const vf t = 1.0f / (z * 0.3275911f + 1.0f);
    vf poly = t * 1.061405429f - 1.453152027f;
    poly = poly * t + 1.421413741f;
    poly = poly * t - 0.284496736f;
    poly = poly * t + 0.254829592f;
    poly = poly * t;
    const vf h = poly * vexp(-(z * z)) * 0.5f * v;
    return vselect(v < 0, h, v - h);
}

static void gelu_part(const void *ctx, long lo, long hi) {
    float *a = (float *)ctx;
    long i = lo;
    for (; i + VL <= hi; i += VL) *(vf *)(a + i) = vgelu(*(const vf *)(a + i));
    for (; i < hi; i++) {
        vf v = (vf){0} + a[i];
        a[i] = vgelu(v)[0];
    }
}

/* GELU of the contiguous float32 `a` (n elements), in place. */
void mas_gelu(float *a, long n) {
    if (n < 1) return;
    const task_t t = {gelu_part, a, n, 1024};
    run(&t, (size_t)n);
}

/* ---- an encoder's self-attention, fused: softmax(q k^T * scale) v per head ---- */
enum { HD = 64 };          /* head width: every Whisper size has 64 */
enum { QB = 48 };          /* query rows per block: its scores (QB x S) stay in L2 */
enum { SR = 8, SC = 32 };  /* scores tile: SR query rows x SC keys */
enum { PR = 6 };           /* probabilities x values tile: PR rows x HD */

typedef struct {
    float *q; /* (B, T, H * HD) rows ldq apart, batches bq apart; the output overwrites it */
    const float *k, *v;
    long B, T, S, H, ldq, ldk, ldv, bq, bk, bv;
    float scale;
    int failed;
} attn_t;

/* Per thread: K^T of one head in SC-wide panels, V of one head packed, one block's scores. */
static __thread float *attn_buf;
static __thread size_t attn_cap;

static float *attn_scratch(size_t floats) {
    if (floats > attn_cap) {
        free(attn_buf);
        attn_buf = aligned_alloc(64, floats * sizeof(float));
        attn_cap = attn_buf == NULL ? 0 : floats;
    }
    return attn_buf;
}

/* scores[r][0 .. Sp) = q_r . k_j for SR packed query rows; kt holds SC-key panels (HD x SC). */
static void attn_scores(const float *qb, const float *kt, float *sc, long Sp) {
    for (long j = 0; j < Sp; j += SC) {
        const float *panel = kt + j * HD;
        vf acc[SR][2];
        for (int r = 0; r < SR; r++) acc[r][0] = acc[r][1] = (vf){0};
        for (int c = 0; c < HD; c++) {
            const vf k0 = *(const vf *)(panel + c * SC), k1 = *(const vf *)(panel + c * SC + VL);
            for (int r = 0; r < SR; r++) {
                const float x = qb[r * HD + c];
                acc[r][0] += x * k0;
                acc[r][1] += x * k1;
            }
        }
        for (int r = 0; r < SR; r++) {
            *(vf *)(sc + r * Sp + j) = acc[r][0];
            *(vf *)(sc + r * Sp + j + VL) = acc[r][1];
        }
    }
}

/* out[r] = sum_j p[r][j] v_j for PR rows of probabilities (rows Sp apart), HD wide. */
static void attn_values(const float *p, const float *vp, long S, long Sp, float *out, long ldo,
                        int rows) {
    vf acc[PR][HD / VL];
    for (int r = 0; r < PR; r++)
        for (int c = 0; c < HD / VL; c++) acc[r][c] = (vf){0};
    for (long j = 0; j < S; j++) {
        vf v[HD / VL];
        for (int c = 0; c < HD / VL; c++) v[c] = *(const vf *)(vp + j * HD + c * VL);
        for (int r = 0; r < PR; r++) {
            const float x = p[r * Sp + j];
            for (int c = 0; c < HD / VL; c++) acc[r][c] += x * v[c];
        }
    }
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < HD / VL; c++) *(vf *)(out + r * ldo + c * VL) = acc[r][c];
}

static void attn_part(const void *ctx, long lo, long hi) {
    attn_t *a = (attn_t *)ctx;
    const long S = a->S, Sp = (S + SC - 1) / SC * SC;
    float *kt = attn_scratch((size_t)HD * Sp + (size_t)S * HD + (size_t)QB * Sp + QB * HD);
    if (kt == NULL) {
        __atomic_store_n(&a->failed, 1, __ATOMIC_SEQ_CST);
        return;
    }
    float *vp = kt + (size_t)HD * Sp, *sc = vp + (size_t)S * HD, *qb = sc + (size_t)QB * Sp;
    for (long item = lo; item < hi; item++) {
        const long b = item / a->H, h = item % a->H;
        const float *K = a->k + b * a->bk + h * HD, *V = a->v + b * a->bv + h * HD;
        float *Q = a->q + b * a->bq + h * HD;
        for (long j = 0; j < Sp; j++) { /* K^T in panels of SC keys, zero past S */
            float *col = kt + (j / SC) * SC * HD + j % SC;
            if (j < S)
                for (int c = 0; c < HD; c++) col[c * SC] = K[j * a->ldk + c];
            else
                for (int c = 0; c < HD; c++) col[c * SC] = 0.0f;
        }
        for (long j = 0; j < S; j++) memcpy(vp + j * HD, V + j * a->ldv, HD * sizeof(float));
        for (long t0 = 0; t0 < a->T; t0 += QB) {
            const long n = a->T - t0 < QB ? a->T - t0 : QB;
            for (long r = 0; r < QB; r++)
                for (int c = 0; c < HD; c++)
                    qb[r * HD + c] = r < n ? Q[(t0 + r) * a->ldq + c] * a->scale : 0.0f;
            for (long r = 0; r < n; r += SR) attn_scores(qb + r * HD, kt, sc + r * Sp, Sp);
            for (long r = 0; r < n; r++) softmax_row(sc + r * Sp, S);
            for (long r = 0; r < n; r += PR)
                attn_values(sc + r * Sp, vp, S, Sp, Q + (t0 + r) * a->ldq, a->ldq,
                            n - r < PR ? (int)(n - r) : PR);
        }
    }
}

/* Multi-head attention without a mask for B batches of T queries over S keys, H heads of 64:
 * q, k, v hold head h in columns [64 h, 64 h + 64) of their rows (ldq/ldk/ldv apart; batches
 * bq/bk/bv apart). The result overwrites q (each head reads its own columns of a block of
 * rows before writing them). One head per task on the pool; a block of QB query rows at a
 * time: scores, softmax and values stay in cache. Returns 0, or 1 if scratch memory failed. */
int mas_attention(float *q, const float *k, const float *v, long B, long T, long S, long H,
                  long ldq, long ldk, long ldv, long bq, long bk, long bv, float scale) {
    if (B < 1 || T < 1 || S < 1 || H < 1) return 0;
    attn_t a = {q, k, v, B, T, S, H, ldq, ldk, ldv, bq, bk, bv, scale, 0};
    const task_t t = {attn_part, &a, B * H, 1};
    run(&t, (size_t)B * H * T * S);
    return a.failed;
}

/* ---- layer norm over rows ---- */
typedef struct {
    const float *x, *w, *b;
    float *y;
    long cols;
    float eps;
} norm_t;

static void norm_part(const void *ctx, long lo, long hi) {
    const norm_t *n = ctx;
    const long cols = n->cols, cv = cols - cols % VL;
    for (long i = lo; i < hi; i++) {
        const float *x = n->x + i * cols;
        float *y = n->y + i * cols;
        vf s = (vf){0};
        for (long c = 0; c < cv; c += VL) s += *(const vf *)(x + c);
        float sum = hsum(s);
        for (long c = cv; c < cols; c++) sum += x[c];
        const float mean = sum / cols;
        vf s2 = (vf){0};
        for (long c = 0; c < cv; c += VL) {
            const vf d = *(const vf *)(x + c) - mean;
            s2 += d * d;
        }
        float ss = hsum(s2);
        for (long c = cv; c < cols; c++) ss += (x[c] - mean) * (x[c] - mean);
        const float inv = 1.0f / __builtin_sqrtf(ss / cols + n->eps);
        for (long c = 0; c < cv; c += VL)
            *(vf *)(y + c) = (*(const vf *)(x + c) - mean) * inv * *(const vf *)(n->w + c) +
                             *(const vf *)(n->b + c);
        for (long c = cv; c < cols; c++) y[c] = (x[c] - mean) * inv * n->w[c] + n->b[c];
    }
}

/* y = (x - mean) / sqrt(var + eps) * w + b over each row of the contiguous (rows, cols) x. */
void mas_layer_norm(const float *x, const float *w, const float *b, float *y, long rows,
                    long cols, float eps) {
    if (rows < 1 || cols < 1) return;
    const norm_t n = {x, w, b, y, cols, eps};
    const task_t t = {norm_part, &n, rows, 8};
    run(&t, (size_t)rows * cols);
}

/* ---- a decoding step's attention: a few query rows over a head-major key/value cache ---- */
enum { STEP_ROWS = 16 }; /* query rows per cache (beams sharing an audio's cross-attention) */

typedef struct {
    float *q; /* (Bk * R, H * HD) rows ldq apart; the output overwrites it */
    const float *k, *v; /* (Bk, H, S, HD): rows HD apart, heads ldh apart */
    long Bk, R, S, H, ldq, ldh;
    float scale;
    int failed;
} step_t;

static void step_part(const void *ctx, long lo, long hi) {
    step_t *a = (step_t *)ctx;
    const long S = a->S, R = a->R, Sp = (S + VL - 1) / VL * VL;
    float *sc = attn_scratch((size_t)STEP_ROWS * Sp + STEP_ROWS * HD);
    if (sc == NULL) {
        __atomic_store_n(&a->failed, 1, __ATOMIC_SEQ_CST);
        return;
    }
    float *qb = sc + (size_t)STEP_ROWS * Sp;
    for (long item = lo; item < hi; item++) {
        const long b = item / a->H, h = item % a->H;
        const float *K = a->k + (size_t)item * a->ldh, *V = a->v + (size_t)item * a->ldh;
        float *Q = a->q + b * R * a->ldq + h * HD;
        for (long r = 0; r < R; r++)
            for (int c = 0; c < HD; c++) qb[r * HD + c] = Q[r * a->ldq + c] * a->scale;
        for (long j = 0; j < S; j++) { /* each key read once for all R rows */
            const vf k0 = *(const vf *)(K + j * HD), k1 = *(const vf *)(K + j * HD + VL),
                     k2 = *(const vf *)(K + j * HD + 2 * VL), k3 = *(const vf *)(K + j * HD + 3 * VL);
            for (long r = 0; r < R; r++) {
                const float *x = qb + r * HD;
                const vf s = (k0 * *(const vf *)x + k1 * *(const vf *)(x + VL)) +
                             (k2 * *(const vf *)(x + 2 * VL) + k3 * *(const vf *)(x + 3 * VL));
                sc[r * Sp + j] = hsum(s);
            }
        }
        for (long r = 0; r < R; r++) softmax_row(sc + r * Sp, S);
        for (long r0 = 0; r0 < R; r0 += 4) { /* four rows' outputs in registers */
            const int n = R - r0 < 4 ? (int)(R - r0) : 4;
            vf acc[4][HD / VL];
            for (int r = 0; r < 4; r++)
                for (int c = 0; c < HD / VL; c++) acc[r][c] = (vf){0};
            for (long j = 0; j < S; j++) {
                vf v[HD / VL];
                for (int c = 0; c < HD / VL; c++) v[c] = *(const vf *)(V + j * HD + c * VL);
                for (int r = 0; r < n; r++) {
                    const float p = sc[(r0 + r) * Sp + j];
                    for (int c = 0; c < HD / VL; c++) acc[r][c] += p * v[c];
                }
            }
            for (int r = 0; r < n; r++)
                for (int c = 0; c < HD / VL; c++)
                    *(vf *)(Q + (r0 + r) * a->ldq + c * VL) = acc[r][c];
        }
    }
}

/* Attention of Bk * R query rows (R <= 16 per cache: one decoding step's rows, e.g. the beams of
 * an audio) over Bk head-major caches k, v (Bk, H, S, 64) whose heads start ldh floats apart
 * (S * 64 when contiguous; more for a preallocated cache), no mask: rows b * R .. b * R + R - 1
 * of q (ldq apart, head h in columns [64 h, 64 h + 64)) attend to cache b. The result overwrites
 * q. One (cache, head) per task on the pool. Returns 0, 1 if scratch memory failed, 2 if R is
 * out of range. */
int mas_attention_step(float *q, const float *k, const float *v, long Bk, long R, long S, long H,
                       long ldq, long ldh, float scale) {
    if (R < 1 || R > STEP_ROWS || ldh < S * HD) return 2;
    if (Bk < 1 || S < 1 || H < 1) return 0;
    step_t a = {q, k, v, Bk, R, S, H, ldq, ldh, scale, 0};
    const task_t t = {step_part, &a, Bk * H, 1};
    run(&t, (size_t)Bk * H * S * HD);
    return a.failed;
}

/* ---- ECAPA-TDNN on CPU: the passes between its matrix products, on the pool ---- */

/* Reflection of frame j into [0, n) ("same" padding at an utterance's own end), clipped to the
 * tensor's T frames. */
static inline long reflect(long j, long n, long T) {
    long i = j < 0 ? -j : j;
    if (i >= n) i = 2 * (n - 1) - i;
    return i < 0 ? 0 : i >= T ? T - 1 : i;
}

/* im2col for a k-tap convolution with dilation d and reflection padding at each utterance's
 * frames[b] (NULL: at T): x (B, T, c) with row stride ldx -> col (B * T, k * c). */
typedef struct {
    const float *x;
    float *col;
    long T, c, k, d, ldx;
    const long *frames;
} im2col_t;

static void im2col_part(const void *ctx, long lo, long hi) {
    const im2col_t *a = ctx;
    const long pad = a->d * (a->k - 1) / 2, kc = a->k * a->c;
    for (long r = lo; r < hi; r++) {
        const long b = r / a->T, t = r % a->T, n = a->frames ? a->frames[b] : a->T;
        for (long tap = 0; tap < a->k; tap++) {
            const long s = reflect(t - pad + tap * a->d, n, a->T);
            memcpy(a->col + r * kc + tap * a->c, a->x + (b * a->T + s) * a->ldx,
                   sizeof(float) * a->c);
        }
    }
}

void mas_im2col(const float *x, long ldx, long B, long T, long c, long k, long d,
                const long *frames, float *col) {
    const im2col_t a = {x, col, T, c, k, d, ldx, frames};
    const task_t t = {im2col_part, &a, B * T, 1};
    run(&t, (size_t)B * T * k * c);
}

/* y (rows, n), row stride ldy, in place: y = shift + scale * relu(y + bias) (a TDNN block's
 * bias, ReLU and inference BatchNorm), then tanh when `act` is 1. */
typedef struct {
    float *y;
    long n, ldy;
    const float *bias, *scale, *shift;
    int act;
} post_t;

static inline vf vtanh(vf v) { /* sign(v) (1 - e) / (1 + e), e = exp(-2 |v|) */
    const vf a = vselect(v < 0, -v, v);
    const vf e = vexp(a * -2.0f);
    const vf t = (1.0f - e) / (1.0f + e);
    return vselect(v < 0, -t, t);
}

static void post_part(const void *ctx, long lo, long hi) {
    const post_t *p = ctx;
    const long nv = p->n - p->n % VL;
    for (long r = lo; r < hi; r++) {
        float *y = p->y + r * p->ldy;
        for (long j = 0; j < p->n; j++) {
            const float v = y[j] + p->bias[j];
            y[j] = (v > 0.0f ? v : 0.0f) * p->scale[j] + p->shift[j];
        }
        if (p->act != 1) continue;
        for (long j = 0; j < nv; j += VL) *(vf *)(y + j) = vtanh(*(const vf *)(y + j));
        for (long j = nv; j < p->n; j++) {
            vf v = (vf){0} + y[j];
            y[j] = vtanh(v)[0];
        }
    }
}

void mas_bias_relu_affine(float *y, long rows, long n, long ldy, const float *bias,
                          const float *scale, const float *shift, int act) {
    const post_t p = {y, n, ldy, bias, scale, shift, act};
    const task_t t = {post_part, &p, rows, 1};
    run(&t, (size_t)rows * n);
}

/* out[b, t] = y[b, t] * g[b] + res[b, t] over (B, T, n) with row strides ldo, ldy, ldr (a
 * squeeze-excitation's scaling and the residual). */
typedef struct {
    float *out;
    const float *y, *g, *res;
    long T, n, ldo, ldy, ldr;
} scale_add_t;

static void scale_add_part(const void *ctx, long lo, long hi) {
    const scale_add_t *a = ctx;
    for (long r = lo; r < hi; r++) {
        const float *y = a->y + r * a->ldy, *res = a->res + r * a->ldr, *g = a->g + r / a->T * a->n;
        float *o = a->out + r * a->ldo;
        for (long j = 0; j < a->n; j++) o[j] = y[j] * g[j] + res[j];
    }
}

void mas_scale_add(float *out, long ldo, const float *y, long ldy, const float *g,
                   const float *res, long ldr, long B, long T, long n) {
    const scale_add_t a = {out, y, g, res, T, n, ldo, ldy, ldr};
    const task_t t = {scale_add_part, &a, B * T, 1};
    run(&t, (size_t)B * T * n);
}

/* Weighted statistics over time, per utterance and column, for x (B, T, n) with row stride
 * ldx and weights w (B, T) that sum to 1 over each utterance's frames (NULL: 1 / T each):
 * mean (B, n) and, unless std is NULL, std = sqrt(max(var, eps)) with var the weighted mean
 * of (x - mean)^2. Columns are split over the pool. */
typedef struct {
    const float *x, *w;
    float *mean, *std;
    long B, T, n, ldx;
    float eps;
} stats_t;

static void stats_part(const void *ctx, long lo, long hi) {
    const stats_t *a = ctx;
    const float uniform = 1.0f / (float)a->T;
    for (long b = 0; b < a->B; b++) {
        float *mean = a->mean + b * a->n, *sd = a->std ? a->std + b * a->n : NULL;
        for (long j = lo; j < hi; j++) mean[j] = 0.0f;
        for (long t = 0; t < a->T; t++) {
            const float wt = a->w ? a->w[b * a->T + t] : uniform;
            if (wt == 0.0f) continue;
            const float *x = a->x + (b * a->T + t) * a->ldx;
            for (long j = lo; j < hi; j++) mean[j] += wt * x[j];
        }
        if (sd == NULL) continue;
        for (long j = lo; j < hi; j++) sd[j] = 0.0f;
        for (long t = 0; t < a->T; t++) {
            const float wt = a->w ? a->w[b * a->T + t] : uniform;
            if (wt == 0.0f) continue;
            const float *x = a->x + (b * a->T + t) * a->ldx;
            for (long j = lo; j < hi; j++) {
                const float dv = x[j] - mean[j];
                sd[j] += wt * dv * dv;
            }
        }
        for (long j = lo; j < hi; j++) sd[j] = __builtin_sqrtf(sd[j] > a->eps ? sd[j] : a->eps);
    }
}

void mas_time_stats(const float *x, long ldx, long B, long T, long n, const float *w, float eps,
                    float *mean, float *std) {
    const stats_t a = {x, w, mean, std, B, T, n, ldx, eps};
    const task_t t = {stats_part, &a, n, VL};
    run(&t, (size_t)B * T * n);
}

/* Attentive statistics pooling: logits (B, T, n) contiguous get `bias` added and become, in
 * place, their softmax over time (unnormalized: exp(l - max)) among the frames with
 * w[b, t] > 0 (w NULL: all; the others get 0); mean (B, n) and std (B, n) are the statistics
 * of x (B, T, n), row stride ldx, under those softmax weights, std = sqrt(max(var, eps)). */
typedef struct {
    float *l;
    const float *x, *bias, *w;
    float *mean, *std;
    long B, T, n, ldx;
    float eps;
} attn_stats_t;

enum { ASP_COLS = 256 }; /* columns per pass: their running sums stay in L1 */

static void attn_stats_part(const void *ctx, long lo, long hi) {
    const attn_stats_t *a = ctx;
    float peak[ASP_COLS], total[ASP_COLS];
    for (long b = 0; b < a->B; b++) {
        for (long j0 = lo; j0 < hi; j0 += ASP_COLS) {
            const long j1 = j0 + ASP_COLS < hi ? j0 + ASP_COLS : hi, m = j1 - j0;
            const long mv = m - m % VL;
            float *mean = a->mean + b * a->n + j0, *sd = a->std + b * a->n + j0;
            const float *bias = a->bias + j0;
            for (long j = 0; j < m; j++) peak[j] = -__builtin_inff(), total[j] = mean[j] = sd[j] = 0.0f;
            for (long t = 0; t < a->T; t++) {
                float *l = a->l + (b * a->T + t) * a->n + j0;
                if (a->w && a->w[b * a->T + t] <= 0.0f) continue;
                for (long j = 0; j < m; j++) {
                    const float v = l[j] + bias[j];
                    peak[j] = v > peak[j] ? v : peak[j];
                }
            }
            for (long t = 0; t < a->T; t++) {
                float *l = a->l + (b * a->T + t) * a->n + j0;
                const float *x = a->x + (b * a->T + t) * a->ldx + j0;
                if (a->w && a->w[b * a->T + t] <= 0.0f) {
                    memset(l, 0, sizeof(float) * m);
                    continue;
                }
                for (long j = 0; j < mv; j += VL) {
                    const vf e = vexp(*(const vf *)(l + j) + *(const vf *)(bias + j) -
                                      *(const vf *)(peak + j));
                    *(vf *)(l + j) = e;
                    *(vf *)(total + j) += e;
                    *(vf *)(mean + j) += e * *(const vf *)(x + j);
                }
                for (long j = mv; j < m; j++) {
                    const float e = sexp(l[j] + bias[j] - peak[j]);
                    l[j] = e, total[j] += e, mean[j] += e * x[j];
                }
            }
            for (long j = 0; j < m; j++) mean[j] /= total[j];
            for (long t = 0; t < a->T; t++) {
                if (a->w && a->w[b * a->T + t] <= 0.0f) continue;
                const float *l = a->l + (b * a->T + t) * a->n + j0;
                const float *x = a->x + (b * a->T + t) * a->ldx + j0;
                for (long j = 0; j < m; j++) {
                    const float dv = x[j] - mean[j];
                    sd[j] += l[j] * dv * dv;
                }
            }
            for (long j = 0; j < m; j++) {
                const float var = sd[j] / total[j];
                sd[j] = __builtin_sqrtf(var > a->eps ? var : a->eps);
            }
        }
    }
}

void mas_attentive_stats(float *logits, const float *bias, const float *x, long ldx, long B,
                         long T, long n, const float *w, float eps, float *mean, float *std) {
    const attn_stats_t a = {logits, x, bias, w, mean, std, B, T, n, ldx, eps};
    const task_t t = {attn_stats_part, &a, n, VL};
    run(&t, (size_t)B * T * n);
}

/* A Res2Net block in one call. x (B, T, scale * c) contiguous, in place: chunk 0 stays; chunk
 * i >= 1 becomes shift_i + scale_i * relu(conv_i(in_i) + bias_i), with in_1 = chunk 1 and in_i
 * = chunk i + (new) chunk i - 1, conv_i a k-tap convolution with dilation d and reflection
 * padding at each utterance's frames[b] (NULL: at T), weights w[i - 1] (k * c, c) as im2col
 * rows. Each chunk: `mas_im2col`, the product through cblas_sgemm (the BLAS's for these sizes)
 * straight into the chunk's columns, `mas_bias_relu_affine`. Returns 0, or 1 when out of
 * memory. */
int mas_res2net(float *x, long B, long T, long scale, long c, long k, long d, const long *frames,
                const float *const *w, const float *const *bias, const float *const *bn_scale,
                const float *const *bn_shift) {
    const long C = scale * c, rows = B * T, kc = k * c;
    float *col = malloc(sizeof(float) * (size_t)rows * kc);
    float *in = malloc(sizeof(float) * (size_t)rows * c);
    if (col == NULL || in == NULL) {
        free(col), free(in);
        return 1;
    }
    for (long i = 1; i < scale; i++) {
        for (long r = 0; r < rows; r++) { /* this chunk's input, (rows, c) */
            const float *xi = x + r * C + i * c;
            float *dst = in + r * c;
            if (i == 1)
                memcpy(dst, xi, sizeof(float) * c);
            else
                for (long j = 0; j < c; j++) dst[j] = xi[j] + xi[j - c];
        }
        mas_im2col(in, c, B, T, c, k, d, frames, col);
        cblas_sgemm(ROW_MAJOR, NO_TRANS, NO_TRANS, (int)rows, (int)c, (int)kc, 1.0f, col, (int)kc,
                    w[i - 1], (int)c, 0.0f, x + i * c, (int)C);
        mas_bias_relu_affine(x + i * c, rows, c, C, bias[i - 1], bn_scale[i - 1], bn_shift[i - 1],
                             0);
    }
    free(col), free(in);
    return 0;
}
