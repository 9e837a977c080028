"""Live input for the pipeline: raw PCM from a stream (stdin) or the default microphone.

`run_live(pipeline, chunks, on_event)` feeds chunks as they arrive and hands each event to
`on_event` as soon as it is decided; Ctrl-C (KeyboardInterrupt), SIGTERM or the end of the
input end it cleanly: the open piece is closed and every stream's text is made final.
"""

from __future__ import annotations

import contextlib
import queue
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import BinaryIO

import numpy as np

from ..atomic import TERMINATING, Terminated
from ..errors import AudioError, MasError
from .config import SAMPLE_RATE


class _Resampler:
    """Streaming resampler to 16 kHz (soxr, which librosa already depends on)."""

    def __init__(self, rate: int):
        self.rate = rate
        self.stream = None
        if rate != SAMPLE_RATE:
            import soxr

            self.stream = soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32")

    def __call__(self, x: np.ndarray, last: bool = False) -> np.ndarray:
        if self.stream is None:
            return x
        return self.stream.resample_chunk(x, last=last)


FILE_MAGIC = ((b"RIFF", "WAV"), (b"fLaC", "FLAC"), (b"OggS", "Ogg"), (b"ID3", "MP3"))


def pcm_chunks(
    stream: BinaryIO, rate: int = SAMPLE_RATE, chunk_s: float = 0.5, name: str = "stdin"
) -> Iterator[np.ndarray]:
    """16-bit little-endian mono PCM at `rate` -> float32 chunks at 16 kHz. A dangling odd
    byte at the end (input cut mid-sample) is dropped with a note on stderr."""
    if rate <= 0:
        raise AudioError(f"{name}: --rate must be positive, got {rate}")
    res = _Resampler(rate)
    nbytes = max(4, int(chunk_s * rate) * 2)  # 4: a file's magic is read whole
    left = b""
    first = True
    while True:
        data = stream.read(nbytes)
        if not data:
            break
        if first:
            first = False
            kind = next((k for m, k in FILE_MAGIC if data.startswith(m)), None)
            if kind is not None:
                raise AudioError(
                    f"{name}: starts like a {kind} file, not raw 16-bit PCM: give the file's "
                    "path instead (mas pipeline FILE)"
                )
        data = left + data
        cut = len(data) - len(data) % 2
        data, left = data[:cut], data[cut:]
        if data:
            x = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
            y = res(x)
            if y.size:
                yield y
    if left:
        print(f"mas pipeline: {name}: input ended mid-sample: 1 byte dropped", file=sys.stderr)
    tail = res(np.zeros(0, np.float32), last=True)
    if tail.size:
        yield tail


MIC_BEHIND_S = 30.0  # how far the pipeline may fall behind the microphone (then audio drops)


def mic_chunks(
    chunk_s: float = 0.5,
    device=None,
    on_drop: Callable[[float], None] | None = None,
    behind_s: float = MIC_BEHIND_S,
) -> Iterator[np.ndarray]:
    """Chunks from the default (or `device`) microphone at 16 kHz mono, until interrupted.

    The device is opened here, so a missing sounddevice/PortAudio or microphone is an error
    before any model loads; recording starts with the first chunk asked for. The microphone
    does not wait for the pipeline: when the pipeline falls more than `behind_s` behind (more
    speakers than this CPU decodes in real time), all the audio not yet processed is dropped
    and silence of its length takes its place (cheap: the VAD skips it), so memory and latency
    stay bounded and event times stay on the microphone's clock; `on_drop(seconds)` is told
    each time."""
    try:
        import sounddevice as sd
    except (ImportError, OSError) as exc:
        raise MasError(
            f"microphone input needs the sounddevice package and PortAudio ({exc}): "
            "pip install 'mlx-audio-stack[mic]'; on Debian/Ubuntu also "
            "apt-get install libportaudio2"
        ) from None
    block = max(1, int(chunk_s * SAMPLE_RATE))
    q: queue.Queue = queue.Queue(maxsize=max(1, round(behind_s * SAMPLE_RATE / block)))
    pos = [0]  # samples the microphone has delivered

    def callback(indata, frames, t, status):  # runs on PortAudio's thread: never blocks
        item = (pos[0], indata[:, 0].copy())
        pos[0] += len(item[1])
        try:
            q.put_nowait(item)
        except queue.Full:
            # everything not yet processed goes at once (one gap, not one per chunk), so the
            # pipeline starts again from live audio instead of staying `behind_s` behind
            with contextlib.suppress(queue.Empty):
                while True:
                    q.get_nowait()
            with contextlib.suppress(queue.Full):
                q.put_nowait(item)

    try:
        stream = sd.InputStream(
            samplerate=SAMPLE_RATE,
            channels=1,
            dtype="float32",
            blocksize=block,
            device=device,
            callback=callback,
        )
    except Exception as exc:  # PortAudio's own errors: no device, busy, bad rate
        raise MasError(f"microphone: {exc}") from None

    def chunks() -> Iterator[np.ndarray]:
        done = 0
        with stream:
            while True:
                start, x = q.get()
                if start > done:  # dropped while the pipeline was behind: silence instead
                    if on_drop is not None:
                        on_drop((start - done) / SAMPLE_RATE)
                    yield np.zeros(start - done, np.float32)
                done = start + x.size
                yield x

    return chunks()


class StopRequest:
    """Ctrl-C, SIGTERM or SIGHUP during a run (main thread; `with StopRequest() as stop:`).

    While a step is in progress (`with stop.step():` around `push` and the handling of its
    events) the signal only asks for a stop, checked between steps, so no step is cut in half:
    a decode that committed words whose events were not yet recorded would lose them. While the
    run waits for input, or at a second signal, it raises at once (KeyboardInterrupt, or
    `atomic.Terminated` for SIGTERM/SIGHUP)."""

    def __init__(self):
        self.signum: int | None = None
        self._busy = False
        self._old: dict = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, *TERMINATING):
                if signal.getsignal(s) is not signal.SIG_IGN:  # keep nohup's choice
                    self._old[s] = signal.signal(s, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)

    def _handler(self, signum, _frame) -> None:
        if self._busy and self.signum is None:
            self.signum = signum
            return
        raise self.exception(signum)

    @staticmethod
    def exception(signum: int) -> KeyboardInterrupt:
        return KeyboardInterrupt() if signum == signal.SIGINT else Terminated(signum)

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @contextlib.contextmanager
    def step(self) -> Iterator[None]:
        self._busy = True
        try:
            yield
        finally:
            self._busy = False


def run_live(pipeline, chunks: Iterable[np.ndarray], on_event: Callable[[dict], None]) -> bool:
    """Feed `chunks` into `pipeline`, passing events on as they come; always flushes.
    Returns True when the input ended, False when it was interrupted (Ctrl-C / SIGTERM): a
    signal while a chunk is being processed stops the run after that chunk (`StopRequest`)."""
    ended = True
    with StopRequest() as stop:
        try:
            for chunk in chunks:
                with stop.step():
                    for ev in pipeline.push(chunk):
                        on_event(ev)
                if stop.requested:
                    ended = False
                    break
        except KeyboardInterrupt:  # while waiting for input: nothing was cut in half
            ended = False
    for ev in pipeline.flush():
        on_event(ev)
    return ended
