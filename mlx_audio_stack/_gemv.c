/* Forward MLX's few-row float32 matrix products from sgemm to sgemv (Linux, CPU backend).
 *
 * MLX's CPU matmul hands every product to cblas_sgemm. For one row (a decoder step) OpenBLAS
 * 0.3.21's sgemm packs the whole weight into a buffer before multiplying, which roughly
 * doubles the memory traffic, and runs small ones on one core; its sgemv reads the weight
 * once on every core. Newer OpenBLAS releases make the same forward themselves
 * (GEMM_GEMV_FORWARD); Debian 12 ships 0.3.21. mlx_audio_stack/_blas.py compiles this file
 * and loads it into the global symbol scope before the BLAS and before MLX, so MLX's calls to
 * cblas_sgemm land here; everything else goes to the BLAS unchanged.
 */
#define _GNU_SOURCE /* RTLD_NEXT */
#include <dlfcn.h>
#include <stddef.h>
#include <string.h>

enum { ROW_MAJOR = 101, NO_TRANS = 111, TRANS = 112 };

typedef void (*sgemm_fn)(int, int, int, int, int, int, float, const float *, int,
                         const float *, int, float, float *, int);
typedef void (*sgemv_fn)(int, int, int, int, float, const float *, int, const float *, int,
                         float, float *, int);

static sgemm_fn real_sgemm;
static sgemv_fn real_sgemv;
static int max_rows = 1;
static long n_forwarded;

void cblas_sgemm(int order, int ta, int tb, int M, int N, int K, float alpha, const float *A,
                 int lda, const float *B, int ldb, float beta, float *C, int ldc);

/* Called once from Python, before MLX runs anything: the BLAS to forward to (already loaded
 * with RTLD_GLOBAL) and how many rows still go to sgemv (one call per row). Returns 0 on
 * success. */
int mas_gemv_init(const char *blas_path, int rows) {
    void *h = dlopen(blas_path, RTLD_NOW | RTLD_GLOBAL | RTLD_NOLOAD);
    if (h == NULL) h = dlopen(blas_path, RTLD_NOW | RTLD_GLOBAL);
    if (h == NULL) return 1;
    sgemm_fn g = (sgemm_fn)dlsym(h, "cblas_sgemm");
    sgemv_fn v = (sgemv_fn)dlsym(h, "cblas_sgemv");
    if (g == NULL || v == NULL || (void *)g == (void *)&cblas_sgemm) return 2;
    real_sgemv = v;
    max_rows = rows;
    real_sgemm = g;
    return 0;
}

/* How many products went to sgemv so far (a check that MLX's calls land here). */
long mas_gemv_forwarded(void) { return __atomic_load_n(&n_forwarded, __ATOMIC_RELAXED); }

void cblas_sgemm(int order, int ta, int tb, int M, int N, int K, float alpha, const float *A,
                 int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    if (real_sgemm == NULL) { /* not initialised: pass everything to the next library's */
        real_sgemm = (sgemm_fn)dlsym(RTLD_NEXT, "cblas_sgemm");
        if (real_sgemm == NULL) return;
        max_rows = 0;
    }
    if (order != ROW_MAJOR || M > max_rows || N < 2 || K < 1) {
        real_sgemm(order, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    /* Row r of C (1 x N) = alpha * a_r (1 x K) . op(B) (K x N) + beta * C_r: with B stored
     * N x K (tb == TRANS, an nn.Linear weight) that is B a_r; stored K x N, B^T a_r. */
    for (int r = 0; r < M; r++) {
        const float *x = (ta == NO_TRANS) ? A + (size_t)r * lda : A + r;
        int incx = (ta == NO_TRANS) ? 1 : lda;
        float *y = C + (size_t)r * ldc;
        if (beta == 0.0f) memset(y, 0, sizeof(float) * (size_t)N); /* C may be uninitialised */
        if (tb == TRANS)
            real_sgemv(ROW_MAJOR, NO_TRANS, N, K, alpha, B, ldb, x, incx, beta, y, 1);
        else
            real_sgemv(ROW_MAJOR, TRANS, K, N, alpha, B, ldb, x, incx, beta, y, 1);
    }
    __atomic_fetch_add(&n_forwarded, 1, __ATOMIC_RELAXED);
}
