"""`mas separate`: split a mixture into one file per speaker with MossFormer2.

Progress: one separation window takes seconds to minutes on a CPU (~6 s per second of audio
here), so the bar counts windows in steps of one MossFormer block: its total is every window
the run will separate, the streaming path's last one too (StreamingSeparator.flush() separates
a full final window after the last block is read; a bar over blocks left that out, the
~90 s of silence after its end on a 30 s file).
"""

from __future__ import annotations

import contextlib


def register(sub) -> None:
    from ..progress import add_quiet_flag

    p = sub.add_parser(
        "separate",
        help="separate overlapping speakers (MossFormer2)",
        description="Separate a mixture into <out>/spk1.wav, spk2.wav[, "
        "spk3.wav] at the model's sample rate. Any input rate or "
        "channel count is mixed to mono and resampled. Input "
        "longer than 20 s is streamed from disk in overlapping "
        "windows (bounded memory).",
    )
    p.add_argument("audio", help="input audio file")
    p.add_argument("--model", required=True, help="converted MossFormer2 folder")
    p.add_argument("--out", required=True, help="output folder for spk1.wav ...")
    p.add_argument("--num-spks", type=int, help="fail unless the model separates this many")
    p.add_argument(
        "--chunk",
        type=float,
        default=None,
        help="window seconds (default: one pass up to 20 s, else 8 s windows)",
    )
    p.add_argument("--overlap", type=float, default=1.0, help="window overlap seconds")
    p.add_argument(
        "--normalize",
        action="store_true",
        help="rescale each source to the mixture's RMS, as ClearerVoice does (one-pass input only)",
    )
    add_quiet_flag(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    import soundfile as sf

    from ..audio import _open_info, stream_length
    from ..models.mossformer2 import load_model, separate
    from ..models.mossformer2.io import separate_file_streaming, write_sources
    from ..models.mossformer2.separate import CHUNK_S, ONE_PASS_S
    from ..progress import show_progress

    info = _open_info(Path(args.audio))
    model = load_model(args.model, num_spks=args.num_spks)
    sr = model.sample_rate
    if info.samplerate != sr or info.channels != 1:
        print(f"input: {info.channels} channel(s) at {info.samplerate} Hz -> mono {sr} Hz")
    duration = info.frames / info.samplerate
    long_input = duration > (args.chunk or ONE_PASS_S)
    samples = stream_length(info, sr)  # at the model rate
    window_s = args.chunk or CHUNK_S
    total = count_windows(samples, window_s * sr, args.overlap * sr) if long_input else 1
    with window_progress(model, total, show_progress(args.quiet)):
        if long_input:
            if args.normalize:
                print("--normalize: ignored for streamed input (needs the whole file's RMS)")
            paths = separate_file_streaming(args.audio, model, args.out, window_s, args.overlap)
        else:
            sources = separate(args.audio, model, normalize=args.normalize)
            paths = write_sources(sources, args.out, sr)
    for path in paths:
        print(f"wrote {path} ({sf.info(str(path)).duration:.2f} s)")
    return 0


def count_windows(samples: int, window: float, overlap: float) -> int:
    """How many windows StreamingSeparator separates for `samples` samples: those push()
    completes, plus flush()'s final one unless the last overlap already covers the rest."""
    window, overlap = int(round(window)), int(round(overlap))
    hop = window - overlap
    n = (samples - window) // hop + 1 if samples >= window else 0
    rest = samples - n * hop
    return n + (rest > 0 and not (n > 0 and rest <= overlap))


@contextlib.contextmanager
def window_progress(model, total: int, show: bool):
    """A tqdm bar over `total` separation windows, advanced after each MossFormer block
    (evaluated there, so the bar follows the compute), while the block stays wrapped."""
    if not show:
        yield None
        return
    import mlx.core as mx
    from tqdm import tqdm

    blocks = model.mask_net.mdl.intra_mdl.mossformerM
    original = blocks.fsmn
    fmt = "{l_bar}{bar}| {n:.1f}/{total} windows [{elapsed}<{remaining}]"
    bar = tqdm(total=total, desc="separating", bar_format=fmt)

    def ticking(layer):
        def call(x):
            y = layer(x)
            mx.eval(y)
            bar.update(1.0 / len(original))
            return y

        return call

    blocks.fsmn = [ticking(layer) for layer in original]
    try:
        yield bar
        bar.n = bar.total = max(total, round(bar.n))  # whole windows, float sums aside
        bar.refresh()
    finally:
        blocks.fsmn = original
        bar.close()
