/* The voice encoder's LSTM recurrence on CPU: one call per layer (models/voice_encoder/cpu_lstm.py).
 *
 * A step is a product h_{t-1} @ W_hh^T added into the step's gate pre-activations, then the cell
 * update. In Python each step cost ~10 calls (one product, NumPy ufuncs) whose overhead was the
 * time of a 1 x 3 s pass; here the 3 x 160 steps run in one C loop.
 *
 * Layout (cpu_lstm.py prepares it): gate columns i, f, o, g; the sigmoid gates' weights and
 * biases halved, so tanh over all 4H columns gives every gate (sigmoid(z) = 0.5 + 0.5 tanh(z/2)).
 * Products go to the process's cblas_sgemm (mlx_audio_stack/_gemv.c's for up to 8 rows, else the
 * BLAS's) in column blocks of under 65536 weight elements, which _gemv.c computes on the calling
 * thread: no hand-over between threads at each step (on a loaded machine a descheduled worker
 * made a step wait milliseconds).
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

void cblas_sgemm(int order, int ta, int tb, int M, int N, int K, float alpha, const float *A,
                 int lda, const float *B, int ldb, float beta, float *C, int ldc);

enum { ROW_MAJOR = 101, NO_TRANS = 111, BLOCK_ELEMS = 49152 };

/* exp(x) for x in [-87, 88] (clamped), Cephes' expf polynomial: ~2 ulp; vectorises. */
static inline float exp_poly(float x) {
    x = fminf(fmaxf(x, -87.0f), 88.0f);
    const float n = floorf(x * 1.44269504088896341f + 0.5f);
    float r = x - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    const int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* tanh in place: 1 - 2 / (1 + exp(2x)) (absolute error ~1e-7 near 0, saturates cleanly). */
static void tanh_inplace(float *x, long n) {
    for (long i = 0; i < n; i++) x[i] = 1.0f - 2.0f / (1.0f + exp_poly(2.0f * x[i]));
}

/* One layer. xp (T, B, 4H): gate pre-activations from the input (bias included), overwritten.
 * w (H, 4H): W_hh^T. hs (R, B, H): hidden states, step t in slot t % R (R = T keeps them all,
 * R = 2 only the last two). c (B, H): cell state scratch. Initial h and c are zero. */
void mas_lstm_layer(float *xp, const float *w, float *hs, float *c, long T, long B, long H,
                    long R) {
    const long G = 4 * H;
    long cols = BLOCK_ELEMS / (H > 0 ? H : 1);
    if (cols < 1) cols = 1;
    memset(c, 0, sizeof(float) * (size_t)(B * H));
    for (long t = 0; t < T; t++) {
        float *g = xp + t * B * G;
        if (t > 0) {
            const float *h = hs + ((t - 1) % R) * B * H;
            for (long j = 0; j < G; j += cols) {
                const long n = G - j < cols ? G - j : cols;
                cblas_sgemm(ROW_MAJOR, NO_TRANS, NO_TRANS, (int)B, (int)n, (int)H, 1.0f, h, (int)H,
                            w + j, (int)G, 1.0f, g + j, (int)G);
            }
        }
        tanh_inplace(g, B * G);
        float *hn = hs + (t % R) * B * H;
        for (long b = 0; b < B; b++) {
            const float *gb = g + b * G;
            float *cb = c + b * H, *hb = hn + b * H;
            for (long j = 0; j < H; j++) {
                const float i = 0.5f * gb[j] + 0.5f, f = 0.5f * gb[H + j] + 0.5f;
                cb[j] = f * cb[j] + i * gb[3 * H + j];
                hb[j] = cb[j];
            }
            tanh_inplace(hb, H);
            for (long j = 0; j < H; j++) hb[j] *= 0.5f * gb[2 * H + j] + 0.5f;
        }
    }
}
