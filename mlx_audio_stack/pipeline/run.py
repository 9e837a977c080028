"""Running the pipeline over a whole file or array (`mas pipeline FILE`, `mas.run_pipeline`):
the same 0.5 s chunks a live stream would deliver, then the outputs written atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import AudioError
from .config import SAMPLE_RATE
from .driver import Pipeline, PipelineResult


def run_pipeline(
    audio: str | Path | np.ndarray,
    out_dir: str | Path | None = None,
    *,
    chunk_s: float = 0.5,
    progress: bool = False,
    name: str | None = None,
    **kwargs,
) -> PipelineResult:
    """Run the pipeline over a file (any format/rate: resampled to 16 kHz) or a 16 kHz float32
    array, in `chunk_s` chunks as a live stream would arrive; write the outputs to `out_dir`.
    A file is read in blocks (`audio.stream_audio`) and, with `out_dir`, the events are spooled
    to `out_dir`/events.jsonl as they are decided: memory does not grow with its length.
    Keyword arguments go to `Pipeline` (components, `config`, oracle switches).

    Ctrl-C (or SIGTERM) stops the run cleanly: what was heard is flushed and its outputs are
    written (with a note saying where it stopped), then the KeyboardInterrupt goes on with
    that result as its `partial_result`."""
    from tqdm import tqdm

    from ..audio import as_audio, open_stream
    from .live import StopRequest
    from .outputs import write_outputs
    from .record import spool_for

    if isinstance(audio, (str, Path)):
        info, blocks = open_stream(audio, block_s=60.0, sr=SAMPLE_RATE)
        total_s = info.frames / info.samplerate
    else:
        x = as_audio(audio, SAMPLE_RATE)
        if x.size == 0:
            raise AudioError("audio: no samples")
        total_s, blocks = x.size / SAMPLE_RATE, iter([x])
    record = spool_for(out_dir) if out_dir is not None else None
    interrupted = None
    try:
        p = Pipeline(record=record, **kwargs)
        step = max(1, int(chunk_s * SAMPLE_RATE))
        heard = 0
        try:
            with (
                StopRequest() as stop,
                tqdm(total=round(total_s, 1), unit="s", disable=not progress) as bar,
            ):
                for block in blocks:
                    for i in range(0, block.size, step):
                        n = min(step, block.size - i)
                        with stop.step():  # a signal now stops the run after this chunk
                            p.push(block[i : i + n])
                            heard += n
                        bar.update(round(n / SAMPLE_RATE, 1))
                        if stop.requested:
                            raise stop.exception(stop.signum)
        except KeyboardInterrupt as exc:  # Ctrl-C / SIGTERM: a clean stop, as live input has
            interrupted = exc
            p.note(
                f"interrupted after {heard / SAMPLE_RATE:.1f} s of {total_s:.1f} s: "
                "the outputs hold that part"
            )
        p.flush()  # a second interruption here ends the run without outputs
        res = p.result()
        if out_dir is not None:
            stem = name or (Path(audio).stem if isinstance(audio, (str, Path)) else "meeting")
            write_outputs(res, out_dir, stem)
    except BaseException:
        if record is not None:
            record.discard()
        raise
    if interrupted is not None:
        interrupted.partial_result = res  # what was heard, its outputs written
        raise interrupted
    return res
