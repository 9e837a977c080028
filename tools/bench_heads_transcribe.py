#!/usr/bin/env python
"""What the extra heads add to `mas transcribe`: the same clip transcribed with and without
`heads=`, interleaved in one process; writes the "Heads in transcribe" lines of
reports/heads.md (between its markers; the rest of the file is kept).

    python tools/bench_heads_transcribe.py \
        [--audio CLIP] [--model W/whisper-tiny.en] [--heads DIR] [--reps 5]

Two figures: the wall-time ratio (median with / median without; on a shared CPU its noise
is about as large as the effect), and the time spent inside the heads' own calls (pooling the
block outputs and the heads per segment, forced to evaluate) over the whole transcribe time,
measured in the same runs. Without --heads: random heads of all five tasks on the model's
encoder size (their cost does not depend on the weights' values).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's package
import numpy as np  # noqa: E402
from _bench import replace_section  # noqa: E402  (a sibling of this script)

import mlx_audio_stack  # noqa: E402, F401  (fast BLAS first)
from mlx_audio_stack._blas import cpu_model as _cpu  # noqa: E402
from mlx_audio_stack.heads import infer  # noqa: E402
from mlx_audio_stack.paths import REPO_ROOT, data_dir  # noqa: E402

BEGIN, END = "<!-- heads-in-transcribe: tools/bench_heads_transcribe.py -->", "<!-- /heads -->"


def main() -> int:
    import mlx.core as mx

    from mlx_audio_stack.audio import load_audio
    from mlx_audio_stack.data import taxonomy
    from mlx_audio_stack.heads.model import HeadsArgs, TaskSpec, WhisperHeads
    from mlx_audio_stack.models.whisper.load import load_model
    from mlx_audio_stack.models.whisper.transcribe import transcribe

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--audio", type=Path,
                    default=data_dir() / "ami_meeting_clips" / "trn00.wav")  # fmt: skip
    ap.add_argument("--model", type=Path, default=Path("weights/whisper-tiny.en"))
    ap.add_argument("--heads", type=Path)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--report", type=Path, default=REPO_ROOT / "reports" / "heads.md")
    a = ap.parse_args()
    model = load_model(a.model, "float32")
    if a.heads:
        heads = infer.as_heads(a.heads)
        which = str(a.heads)
    else:
        names = [t for t, k in taxonomy.TASKS.items() if k.classes is not None]
        specs = [TaskSpec.from_taxonomy(t) for t in names]
        heads = WhisperHeads(HeadsArgs(model.dims.n_audio_layer, model.dims.n_audio_state,
                                       128, 5, specs))  # fmt: skip
        mx.eval(heads.parameters())
        which = f"random heads, tasks {','.join(names)}, hidden 128"
    audio = load_audio(str(a.audio))
    spent = {"t": 0.0}
    real_pool, real_seg = infer.pooled_window, infer.segment_heads

    def timed(f):
        def g(*args, **kw):
            t = time.perf_counter()
            out = f(*args, **kw)
            mx.eval(out) if isinstance(out, mx.array) else None
            spent["t"] += time.perf_counter() - t
            return out

        return g

    infer.pooled_window, infer.segment_heads = timed(real_pool), timed(real_seg)
    opts = dict(temperature=0.0)
    transcribe(audio, model, **opts)  # warm-up
    plain, with_heads, shares = [], [], []
    for _ in range(a.reps):
        t = time.perf_counter()
        r0 = transcribe(audio, model, **opts)
        plain.append(time.perf_counter() - t)
        spent["t"] = 0.0
        t = time.perf_counter()
        r1 = transcribe(audio, model, heads=heads, **opts)
        with_heads.append(time.perf_counter() - t)
        shares.append(spent["t"] / with_heads[-1])
        if r0["text"] != r1["text"]:
            raise SystemExit("the transcript changed with heads")
    ratio = float(np.median(with_heads) / np.median(plain))
    dur = audio.size / 16000
    lines = [
        BEGIN,
        "## Heads in `mas transcribe` (tools/bench_heads_transcribe.py)",
        "",
        f"CPU: {_cpu()} (2 cores shared with other jobs). {a.model.name}, {a.audio.name} "
        f"({dur:.1f} s, {len(r1['segments'])} segments), {which}; {a.reps} interleaved "
        "runs each, greedy.",
        "",
        f"- wall time with heads / without: **{ratio:.4f}** (median {np.median(with_heads):.2f} "
        f"s vs {np.median(plain):.2f} s; run-to-run spread without heads "
        f"{(max(plain) - min(plain)) / np.median(plain) * 100:.1f} %)",
        f"- time inside the heads' calls / transcribe time: **{np.median(shares) * 100:.2f} %**"
        f" (max {max(shares) * 100:.2f} %); target < 2 %",
        END,
    ]
    block = "\n".join(lines)
    replace_section(a.report, BEGIN, END, block)
    print(block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
