"""Streaming / chunked MossFormer2 separation with a stable speaker order.

The input is cut into windows of `window_s` seconds that overlap by `overlap_s`; each window
is separated on its own, its sources are permuted to best match the previous window's
estimate on the shared overlap (cosine similarity, all S! orders tried), and the two
estimates are cross-faded there. Memory is bounded by one window whatever the input length.

Latency: a sample is emitted once the window that ends `overlap_s` after its hop block has
been separated, so the algorithmic latency is `window_s` (hop + overlap) at worst, plus
the compute time of one window.
"""

from __future__ import annotations

from itertools import permutations

import numpy as np

from ...errors import AudioError, MasError


def best_permutation(ref: np.ndarray, est: np.ndarray) -> tuple[int, ...]:
    """The order p maximizing sum_s cos(ref[s], est[p[s]]); ref, est: (S, T)."""
    s = ref.shape[0]
    rn = ref / (np.linalg.norm(ref, axis=1, keepdims=True) + 1e-8)
    en = est / (np.linalg.norm(est, axis=1, keepdims=True) + 1e-8)
    sim = rn @ en.T  # (S, S) cosine similarities
    return max(permutations(range(s)), key=lambda p: sum(sim[i, p[i]] for i in range(s)))


class StreamingSeparator:
    """Feed mono chunks with `push(chunk)`; get the separated (S, n) samples decided so far.

    `flush()` ends the stream and returns the rest. The speaker order of the output stays
    the order of the first window. `model` is a `MossFormer2`; audio is at its sample rate.
    """

    def __init__(self, model, window_s: float = 4.0, overlap_s: float = 1.0):
        sr = model.sample_rate
        self.model = model
        self.num_spks = model.num_spks
        self.window = int(round(window_s * sr))
        self.overlap = int(round(overlap_s * sr))
        if self.overlap < 0 or 2 * self.overlap > self.window:
            raise MasError(
                f"overlap_s: must be between 0 and window_s / 2 "
                f"(window_s={window_s}, overlap_s={overlap_s})"
            )
        self.hop = self.window - self.overlap
        self.latency_s = self.window / sr
        fade = np.linspace(0.0, 1.0, self.overlap + 2, dtype=np.float32)[1:-1]
        self._fade_in = fade  # (O,)
        self._buf = np.zeros(0, dtype=np.float32)  # input from absolute sample _buf_start
        self._buf_start = 0
        self._emit = 0  # absolute index of the next sample to emit
        self._tail: np.ndarray | None = None  # (S, O): previous window over [_emit, +O)
        self._closed = False

    def _separate(self, x: np.ndarray) -> np.ndarray:
        import mlx.core as mx

        out = self.model(mx.array(x[None]))  # (1, T, S)
        return np.array(out[0]).T  # (S, T)

    def _join(self, est: np.ndarray) -> np.ndarray:
        """Align est (S, n >= O) to the tail, cross-fade the overlap; return est re-ordered."""
        if self._tail is None or self.overlap == 0:
            return est
        o = self.overlap
        p = best_permutation(self._tail, est[:, :o])
        est = est[list(p)]
        est[:, :o] = self._tail * (1.0 - self._fade_in) + est[:, :o] * self._fade_in
        return est

    def push(self, chunk: np.ndarray) -> np.ndarray:
        """Add mono float32 samples; return the (S, n) output now final (n may be 0)."""
        if self._closed:
            raise MasError("push() after flush(): start a new StreamingSeparator")
        chunk = np.asarray(chunk, dtype=np.float32).reshape(-1)
        if not np.all(np.isfinite(chunk)):
            raise AudioError(
                f"audio chunk: {int((~np.isfinite(chunk)).sum())} of "
                f"{chunk.size} samples are NaN or inf"
            )
        self._buf = np.concatenate([self._buf, chunk])
        outs = []
        while self._buf_start + self._buf.size - self._emit >= self.window:
            off = self._emit - self._buf_start
            est = self._join(self._separate(self._buf[off : off + self.window]))
            outs.append(est[:, : self.hop])
            self._tail = est[:, self.hop :].copy()
            self._emit += self.hop
            self._trim()
        return np.concatenate(outs, axis=1) if outs else np.zeros((self.num_spks, 0), np.float32)

    def _trim(self) -> None:
        # keep one window of history before _emit: the final window may reach back into it
        keep_from = max(0, self._emit - self.window)
        drop = keep_from - self._buf_start
        if drop > 0:
            self._buf = self._buf[drop:]
            self._buf_start = keep_from

    def flush(self) -> np.ndarray:
        """End of stream: separate what is left and return it (S, n)."""
        self._closed = True
        end = self._buf_start + self._buf.size
        rest = end - self._emit
        if rest <= 0:
            return np.zeros((self.num_spks, 0), np.float32)
        if self._tail is not None and rest <= self.overlap:
            return self._tail[:, :rest]
        # last window: the final `window` samples (more context than the remainder alone)
        start = max(self._buf_start, end - self.window)
        est = self._separate(self._buf[start - self._buf_start :])
        est = est[:, self._emit - start :]  # (S, rest) over [_emit, end)
        return self._join(est)

    def run(
        self, audio: np.ndarray, block: int | None = None, progress: bool = False
    ) -> np.ndarray:
        """Separate a whole array through the stream (blocks of `block` samples): (S, T)."""
        block = block or self.hop
        starts = range(0, len(audio), block)
        if progress:
            from tqdm import tqdm

            starts = tqdm(starts, unit="block", desc="separating")
        outs = [self.push(audio[i : i + block]) for i in starts]
        outs.append(self.flush())
        return np.concatenate(outs, axis=1)
