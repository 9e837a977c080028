/* Few-row float32 matrix products for MLX's CPU backend on Linux.
 *
 * MLX's CPU matmul hands every product to cblas_sgemm, even one row (a decoder step) or five
 * (beam search). OpenBLAS 0.3.21 (Debian 12) packs the whole weight into a buffer before
 * multiplying, which at least doubles the memory traffic of a product that is nothing but
 * memory traffic: a step must stream every weight once. mlx_audio_stack/_blas.py loads the
 * kernels library (built by kernels/build.py) into the global symbol scope before the BLAS
 * and before MLX, so MLX's calls to cblas_sgemm land here. Products of at most MAS_ROWS rows are computed here, reading
 * each weight element once for all rows, split across a small pool of threads; everything else
 * goes to the BLAS unchanged.
 *
 * Each output element is summed in the same order whatever the row count, the thread count and
 * the split, so a row's result does not depend on how many rows are computed with it.
 */
#define _GNU_SOURCE /* RTLD_NEXT */
#include <dlfcn.h>
#include <stdlib.h>

#include "common.h"

enum { MAS_ROWS = 8, ACC_FLOATS = 8192, SPLIT = 64 };

typedef void (*sgemm_fn)(int, int, int, int, int, int, float, const float *, int,
                         const float *, int, float, float *, int);

static sgemm_fn real_sgemm;
static int max_rows;
static long n_calls;

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

static void product_part(const void *ctx, long lo, long hi) {
    const job_t *j = ctx;
    (j->tb == TRANS ? KT : KN)[j->M](j, (int)lo, (int)hi);
}

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
    mas_pool_set_threads(threads);
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
        if ((double)M * N * K >= (double)(1 << 20)) mas_pool_hush();
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
    mas_pool_run(&t, (size_t)N * K);
    if (x != stack_x) free(x);
    __atomic_fetch_add(&n_calls, 1, __ATOMIC_RELAXED);
}
