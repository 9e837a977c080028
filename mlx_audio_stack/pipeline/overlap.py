"""The overlap detector stage: the trained speaker counter shipped in the package
(`models/speaker_count`, reports/speaker_count.md) behind the pipeline's stage interface."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..errors import WeightsError
from .config import SAMPLE_RATE, PipelineConfig
from .stages import Piece

WINDOW_S = 30.0  # Whisper's window


class CounterOverlap:
    """`state, probs = det.step(state, samples)`: P(0), P(1), P(2), P(3+) speakers for each
    0.1 s frame whose context is complete (frames come 0.415 s after they end)."""

    name = "speaker-count"

    def __init__(self, counter):
        self.counter = counter
        self.frame_s = counter.frame_seconds
        self.threshold = counter.overlap_threshold

    def initial_state(self):
        return self.counter.init_state()

    def step(self, state, samples: np.ndarray):
        return self.counter.step(state, samples)

    def finish(self, state):
        return self.counter.flush(state)


def default_overlap_detector() -> CounterOverlap | None:
    """The shipped speaker counter, or None when its weights cannot be loaded."""
    from ..errors import MasError
    from ..models.speaker_count.load import load_speaker_counter

    try:
        return CounterOverlap(load_speaker_counter())
    except MasError:
        return None


def split_by_overlap(
    piece: Piece, ov: np.ndarray, fs: float, cfg: PipelineConfig, first: int = 0
) -> list[tuple[Piece, int]]:
    """Cut a piece at its overlapped runs: [(part, speaker count)], count >= 2 for a run of
    detector frames (`ov` (F, 4) probabilities, `fs` s each, the first of them frame `first`
    of the stream) with P(>= 2 speakers) >= overlap_threshold lasting >= overlap_min_s;
    slivers shorter than overlap_bridge_s go with the run beside them."""
    hop = fs * SAMPLE_RATE  # samples per detector frame
    f0 = max(int(piece.start // hop), first)
    f1 = max(f0 + 1, int(np.ceil(piece.end / hop)))
    seg = ov[f0 - first : f1 - first]
    multi = seg[:, 2:].sum(axis=1) >= cfg.overlap_threshold if seg.size else seg
    if not np.any(multi):
        return [(piece, 1)]
    runs = _runs(multi, int(round(cfg.overlap_bridge_s / fs)))
    runs = [(a, b) for a, b in runs if (b - a) * fs >= cfg.overlap_min_s]
    if not runs:
        return [(piece, 1)]
    parts: list[tuple[Piece, int]] = []
    pos = piece.start
    min_part = int(cfg.overlap_bridge_s * SAMPLE_RATE)
    for a, b in runs:
        s = max(piece.start, int((f0 + a) * hop))
        e = min(piece.end, int((f0 + b) * hop))
        if s - pos < min_part:  # a sliver before the run goes with it
            s = pos
        if piece.end - e < min_part:
            e = piece.end
        if e <= s:
            continue
        if s > pos:
            parts.append((Piece(pos, s, piece.onset and pos == piece.start), 1))
        count = int(seg[a:b].argmax(axis=1).max())
        parts.append((Piece(s, e, False), max(2, count)))
        pos = e
    if pos < piece.end:
        parts.append((Piece(pos, piece.end, False), 1))
    return parts


def _runs(mask: np.ndarray, bridge: int) -> list[tuple[int, int]]:
    """[start, end) index runs of True in `mask`, joining runs separated by <= bridge."""
    idx = np.flatnonzero(mask)
    if idx.size == 0:
        return []
    runs = [[int(idx[0]), int(idx[0]) + 1]]
    for i in idx[1:]:
        if i - runs[-1][1] <= bridge:
            runs[-1][1] = int(i) + 1
        else:
            runs.append([int(i), int(i) + 1])
    return [(a, b) for a, b in runs]


@dataclass(frozen=True)
class HeadsOverlapState:
    audio: np.ndarray  # samples [start, total) still needed
    start: int = 0
    total: int = 0  # samples received
    done: int = 0  # frames emitted
    passes: int = 0  # encoder passes made (the k-th ends at sample k * hop)


class HeadsOverlap:
    """The speaker-count head of trained Whisper heads (issue 19, `mas train heads --tasks
    speaker_count`) as the overlap stage: P(0..3 speakers) per head frame (0.1 s).

    Every `hop_s` of input the Whisper encoder runs once on the 30 s that end there
    (zero-padded as `transcribe` pads: the features the heads were trained on), and the frames
    up to `lookahead_s` before that point are emitted. Frames come `lookahead_s` to
    `lookahead_s + hop_s` after they end; the passes sit at fixed audio times, so the output
    does not depend on how the input is chunked. Cost: one encoder pass per `hop_s`."""

    name = "speaker-count heads"

    def __init__(
        self, heads, whisper, hop_s: float = 2.0, lookahead_s: float = 1.0, encoder_name="?"
    ):
        from ..heads.infer import as_heads, check_encoder

        self.heads = as_heads(heads)
        spec = self.heads.args.task("speaker_count")
        if not spec.frame_level or tuple(spec.classes) != ("0", "1", "2", "3"):
            raise WeightsError("heads: the speaker_count task must be frame-level with 0-3")
        self.whisper = whisper
        self.encoder_name = encoder_name
        dims = whisper.dims
        check_encoder(self.heads, dims.n_audio_layer, dims.n_audio_state, "overlap heads")
        self.frame_s = self.heads.args.frame_seconds
        self.frame_n = int(round(self.frame_s * SAMPLE_RATE))
        self.hop = max(1, int(round(hop_s / self.frame_s))) * self.frame_n
        self.lookahead = int(round(lookahead_s * SAMPLE_RATE))
        self.window = int(WINDOW_S * SAMPLE_RATE) // self.frame_n * self.frame_n

    def initial_state(self) -> HeadsOverlapState:
        return HeadsOverlapState(np.zeros(0, np.float32))

    def step(self, state: HeadsOverlapState, samples: np.ndarray):
        audio = np.concatenate([state.audio, np.asarray(samples, np.float32)])
        st = replace(state, audio=audio, total=state.total + samples.size)
        out = [np.zeros((0, 4), np.float32)]
        while (st.passes + 1) * self.hop <= st.total:
            end = (st.passes + 1) * self.hop
            st, probs = self._emit(st, end, max(0, end - self.lookahead) // self.frame_n)
            out.append(probs)
        # what the next pass (at the next hop, or at the end of input) will encode
        first = min((st.passes + 1) * self.hop, st.total) - self.window
        keep = max(st.start, first // self.frame_n * self.frame_n)
        st = replace(st, audio=st.audio[keep - st.start :], start=keep)
        return st, np.concatenate(out)

    def finish(self, state: HeadsOverlapState):
        until = -(-state.total // self.frame_n)
        if until <= state.done:
            return state, np.zeros((0, 4), np.float32)
        return self._emit(state, state.total, until)

    def _emit(self, st: HeadsOverlapState, end: int, until: int):
        """Encode the <= 30 s ending at sample `end`; emit frames [done, until)."""
        from ..heads.features import iter_windows

        w0 = max(st.start, -(-(end - self.window) // self.frame_n) * self.frame_n)
        _, pooled = next(iter_windows(self.whisper, st.audio[w0 - st.start : end - st.start],
                                      self.heads.args.pool))  # fmt: skip
        probs = np.array(self.heads.predict(pooled[None])["speaker_count"]["frame_probs"][0])
        a, b = st.done - w0 // self.frame_n, until - w0 // self.frame_n
        out = probs[max(a, 0) : b]
        if out.shape[0] < b - a:  # frames past the encoded audio: the last one repeated
            tail = out[-1:] if out.size else np.eye(4, dtype=np.float32)[:1]
            out = np.concatenate([out, np.repeat(tail, b - a - out.shape[0], axis=0)])
        st = replace(st, done=max(st.done, until), passes=st.passes + 1)
        return st, out.astype(np.float32)


def heads_overlap(folder) -> HeadsOverlap:
    """The overlap stage from a heads folder, with the Whisper encoder the heads were trained
    on (weights/<that model>, loaded once per process)."""
    from ..heads.load import load_heads
    from ..models.whisper.load import load_cached
    from ..paths import weights_dir

    heads = load_heads(folder)
    name = (getattr(heads, "config", None) or {}).get("encoder", {}).get("model")
    path = weights_dir() / str(name)
    if not name or not path.exists():
        raise WeightsError(f"{folder}: no Whisper weights for the heads' encoder {name!r} ({path})")
    return HeadsOverlap(heads, load_cached(str(path)), encoder_name=str(name))
