"""Make the Silero VAD parity fixture: the silero-vad package's TorchScript model's outputs on
the shared real speech, computed once and committed, so tests/test_vad_parity.py compares our
model against them when silero-vad (or torch) is not installed.

For every file of `subset()` (a few of every folder of the shared data), at 16 and 8 kHz:
the JIT's per-chunk speech probabilities (`audio_forward`, float32) and its
`get_speech_timestamps` segments (default options). It records silero-vad's and torch's
versions, the JIT file's sha256 (our converted weights must come from the same file) and the
audio's sha256; the test fails loudly when one differs. Rerun it (and commit
tests/fixtures/silero_vad/) when silero-vad's version changes:

    python tools/make_vad_fixtures.py [--out tests/fixtures/silero_vad]
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import numpy as np  # noqa: E402

import mlx_audio_stack  # noqa: E402,F401  (fast BLAS before MLX)

RATES = (16000, 8000)


def subset(data: Path) -> list[str]:
    """A few files of every folder of the shared data (deterministic), incl. all 3 rates."""
    with open(data / "MANIFEST.tsv", newline="") as f:
        rows = sorted(csv.DictReader(f, delimiter="\t"), key=lambda r: r["relpath"])
    groups: dict[str, list[str]] = {}
    for r in rows:
        parts = r["relpath"].split("/")
        key = "/".join(parts[:2]) if parts[0] in ("librispeech", "valentini") else parts[0]
        groups.setdefault(key, []).append(r["relpath"])
    picked = []
    for key, files in sorted(groups.items()):
        if key == "fsdd":  # 3000 short 8 kHz digits: one per speaker
            seen = {}
            for p in files:
                seen.setdefault(Path(p).stem.split("_")[1], p)
            picked += list(seen.values())
        else:
            picked += files[:: max(1, len(files) // 4)][:4]
    return picked


def jit_path() -> Path:
    import silero_vad

    return Path(silero_vad.__file__).parent / "data" / "silero_vad.jit"


def build(shared: Path) -> tuple[dict, dict[str, np.ndarray]]:
    import silero_vad
    import torch
    from _helpers import installed_version, sha256

    from mlx_audio_stack.audio import load_audio

    torch.set_num_threads(1)  # as silero's import sets it
    jit = silero_vad.load_silero_vad()
    meta = {
        "made_by": "tools/make_vad_fixtures.py",
        "reference": {
            "silero-vad": installed_version("silero-vad"),
            "torch": installed_version("torch"),
        },
        "source_sha256": {"silero_vad.jit": sha256(jit_path())},
        "audio": {},
        "segments": {},
    }
    arrays: dict[str, np.ndarray] = {}
    for rel in subset(shared):
        meta["audio"][rel] = sha256(shared / rel)
        for sr in RATES:
            x = torch.from_numpy(load_audio(shared / rel, sr))
            arrays[f"{rel}@{sr}"] = jit.audio_forward(x, sr)[0].numpy().astype(np.float32)
            segs = silero_vad.get_speech_timestamps(x, jit, sampling_rate=sr)
            meta["segments"][f"{rel}@{sr}"] = [[s["start"], s["end"]] for s in segs]
    return meta, arrays


def main(argv: list[str] | None = None) -> int:
    from _helpers import fixture_main

    return fixture_main(argv, __doc__, "silero_vad", build)


if __name__ == "__main__":
    sys.exit(main())
