"""The multi-speaker pipeline: a noisy room, up to three people talking at once, one live
transcript stream per speaker.

Stages (each `state, out = stage.step(state, x)` with its state a value; the driver in
`driver.py` is the only place that knows their order, and any stage can be swapped for an
oracle in evaluation):

    chunk (0.5 s) -> Silero VAD (32 ms frames; silence is skipped)
      -> speech pieces (cut at pauses >= 0.25 s and at 2 s)
      -> overlap detector (speakers per frame: 0/1/2/3; the shipped counter, or the
         speaker-count head of trained Whisper heads, `overlap.HeadsOverlap`)
         1 speaker -> speaker embedding (ECAPA or the GE2E voice encoder)
                   -> online tracker (stable ids S1, S2 ...; new-speaker detection;
                      --max-speakers) -> that speaker's ASR stream
         2-3       -> MossFormer2 on the piece (+0.5 s context; the 2- or 3-source model
                      by the count, when both are converted) -> per source: energy and VAD
                      check (none left: the part goes on unseparated) -> embedding
                      -> tracker (sources of one window never share an id)
                      -> ASR streams; without separation weights the piece stays whole,
                      goes to the dominant speaker, and an overlap event marks the run
      -> ASR stream per speaker: Whisper re-decodes the speaker's growing buffer every
         `min_chunk_s`; LocalAgreement-2 commits the prefix two decodes agree on (both
         reading the last committed words alike); the buffer
         is trimmed at committed segment ends (whisper_streaming's policy); a decode's last
         segment that Whisper invented (openai-whisper's word anomaly score, or a window
         it judged silent with an anomalous word: see asr.py) is dropped; a prompted
         decode that falls back past temperature 0.5 is redone without the prompt
         (openai-whisper's rule); a speaker silent for 2 s gets their last words
         made final (the last speaker heard only once no speech is open: their next piece
         keeps the buffer)
      -> events (JSON lines; `mas pipeline` spools them to the output folder as they are
         decided, record.py, so memory does not grow with the length of the input)

Events (every one has "type", "start", "end" and "emitted_at"):
- "partial" | "final": "speaker", "text", "words" ([{"word", "start", "end", "probability",
  "source"}]), "confidence" (mean word probability), "source": "direct" | "separated";
- "speaker": a piece of speech given to "speaker", with its "source";
- "overlap": a run where the detector heard "count" (2-3) people: "speakers" (the ids its
  audio went to) and "separated" (whether it was separated); no "speaker" key.
Partial text may change until it is final; final text never changes. `emitted_at` is the audio
time at which the event was decided (algorithmic latency = emitted_at - word end).

Offline (a file) and live (stdin, microphone) run the same driver over 0.5 s chunks, so a
file run and a live run of the same audio give the same finals.
"""

from .config import PipelineConfig
from .driver import Pipeline, PipelineResult
from .run import run_pipeline

__all__ = ["Pipeline", "PipelineConfig", "PipelineResult", "run_pipeline"]
