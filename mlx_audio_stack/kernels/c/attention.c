/* Attention without a mask, fused: an encoder's self-attention (blocks of query rows whose
 * scores stay in cache) and a decoding step's few rows over a head-major key/value cache. */
#include <stdlib.h>

#include "common.h"

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
            for (long r = 0; r < n; r++) mas_softmax_row(sc + r * Sp, S);
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
    mas_pool_run(&t, (size_t)B * H * T * S);
    return a.failed;
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
        for (long r = 0; r < R; r++) mas_softmax_row(sc + r * Sp, S);
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
    mas_pool_run(&t, (size_t)Bk * H * S * HD);
    return a.failed;
}
