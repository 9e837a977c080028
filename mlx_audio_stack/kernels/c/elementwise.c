/* Element-wise work MLX's CPU backend does with scalar exp/erf, and a layer norm: softmax over
 * rows, exact GELU, layer norm over rows, each in one vectorised pass per row or block. */
#include "common.h"

typedef struct {
    float *a;
    long cols;
} rows_t;

void mas_softmax_row(float *row, long cols) {
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
    for (long i = lo; i < hi; i++) mas_softmax_row(t->a + i * t->cols, t->cols);
}

/* Softmax over each row of the contiguous (rows, cols) float32 `a`, in place. */
void mas_softmax_rows(float *a, long rows, long cols) {
    if (rows < 1 || cols < 1) return;
    const rows_t r = {a, cols};
    const task_t t = {softmax_part, &r, rows, 1};
    mas_pool_run(&t, (size_t)rows * cols);
}

/* Exact (erf) GELU: x >= 0: x - h, x < 0: h, with h = 0.5 x (1 - erf(|x| / sqrt 2)) and erf
 * from Abramowitz & Stegun 7.1.26 (|error| <= 1.5e-7). */
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
    mas_pool_run(&t, (size_t)n);
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
    mas_pool_run(&t, (size_t)rows * cols);
}
