/* What the kernels share: 16-float vectors, a vectorised exp, and the thread pool (pool.c).
 *
 * The library is built from every .c file in this folder as one shared object
 * (mlx_audio_stack/kernels/build.py). Functions named mas_pool_* are hidden: only the mas_*
 * entry points and cblas_sgemm (products.c) are visible outside it.
 */
#ifndef MAS_COMMON_H
#define MAS_COMMON_H
#include <stddef.h>
#include <string.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#define HIDDEN __attribute__((visibility("hidden")))

enum { ROW_MAJOR = 101, NO_TRANS = 111, TRANS = 112 };
enum { MAX_THREADS = 16, VL = 16 };
enum { THREAD_MIN_ELEMS = 65536 }; /* smaller work is done by the calling thread alone */

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

static inline vf vtanh(vf v) { /* sign(v) (1 - e) / (1 + e), e = exp(-2 |v|) */
    const vf a = vselect(v < 0, -v, v);
    const vf e = vexp(a * -2.0f);
    const vf t = (1.0f - e) / (1.0f + e);
    return vselect(v < 0, -t, t);
}

/* tanh of n floats in place (vectors, then the tail one float at a time). */
static inline void tanh_inplace(float *x, long n) {
    const long nv = n / VL * VL;
    for (long j = 0; j < nv; j += VL) *(vf *)(x + j) = vtanh(*(const vf *)(x + j));
    for (long j = nv; j < n; j++) x[j] = vtanh((vf){0} + x[j])[0];
}

/* The process's product: products.c's where it was loaded ahead of the BLAS, else the BLAS's. */
void cblas_sgemm(int order, int ta, int tb, int M, int N, int K, float alpha, const float *A,
                 int lda, const float *B, int ldb, float beta, float *C, int ldc);


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

/* Run the task, split over the pool when it is big enough (`work` >= THREAD_MIN_ELEMS, at
 * least two granules) and the pool is free; otherwise on the calling thread alone. */
HIDDEN void mas_pool_run(const task_t *t, size_t work);
/* The threads the pool uses, the caller's included (1 .. MAX_THREADS; before its first run). */
HIDDEN void mas_pool_set_threads(int threads);
/* Softmax of one contiguous row of `cols` floats, in place (elementwise.c). */
HIDDEN void mas_softmax_row(float *row, long cols);
/* A product went to the BLAS: spinning workers go to sleep (its threads need the cores). */
HIDDEN void mas_pool_hush(void);

#endif
