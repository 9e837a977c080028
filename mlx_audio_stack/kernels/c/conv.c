/* ECAPA-TDNN's convolution pieces: im2col with per-utterance reflection, bias + ReLU +
 * BatchNorm (+ tanh) after a product, SE scaling + residual, (attentive) statistics over time
 * and a whole Res2Net block. */
#include <stdlib.h>

#include "common.h"

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
    mas_pool_run(&t, (size_t)B * T * k * c);
}

/* y (rows, n), row stride ldy, in place: y = shift + scale * relu(y + bias) (a TDNN block's
 * bias, ReLU and inference BatchNorm), then tanh when `act` is 1. */
typedef struct {
    float *y;
    long n, ldy;
    const float *bias, *scale, *shift;
    int act;
} post_t;

static void post_part(const void *ctx, long lo, long hi) {
    const post_t *p = ctx;
    for (long r = lo; r < hi; r++) {
        float *y = p->y + r * p->ldy;
        for (long j = 0; j < p->n; j++) {
            const float v = y[j] + p->bias[j];
            y[j] = (v > 0.0f ? v : 0.0f) * p->scale[j] + p->shift[j];
        }
        if (p->act == 1) tanh_inplace(y, p->n);
    }
}

void mas_bias_relu_affine(float *y, long rows, long n, long ldy, const float *bias,
                          const float *scale, const float *shift, int act) {
    const post_t p = {y, n, ldy, bias, scale, shift, act};
    const task_t t = {post_part, &p, rows, 1};
    mas_pool_run(&t, (size_t)rows * n);
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
    mas_pool_run(&t, (size_t)B * T * n);
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
    mas_pool_run(&t, (size_t)B * T * n);
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
    mas_pool_run(&t, (size_t)B * T * n);
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
