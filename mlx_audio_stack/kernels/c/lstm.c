/* The voice encoder's LSTM recurrence on CPU: one call per layer (kernels/lstm.py).
 *
 * A step is a product h_{t-1} @ W_hh^T added into the step's gate pre-activations, then the cell
 * update. In Python each step cost ~10 calls (one product, NumPy ufuncs) whose overhead was the
 * time of a 1 x 3 s pass; here the 3 x 160 steps run in one C loop.
 *
 * Layout (kernels/lstm.py prepares it): gate columns i, f, o, g; the sigmoid gates' weights and
 * biases halved, so tanh over all 4H columns gives every gate (sigmoid(z) = 0.5 + 0.5 tanh(z/2)).
 * Products go to the process's cblas_sgemm (products.c's for up to 8 rows, else the
 * BLAS's) in column blocks of under 65536 weight elements, which products.c computes on the calling
 * thread: no hand-over between threads at each step (on a loaded machine a descheduled worker
 * made a step wait milliseconds).
 */
#include "common.h"

enum { BLOCK_ELEMS = 49152 };

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
