"""`mas pipeline`: multi-speaker transcription of a file, stdin PCM, the microphone, or the
built-in demo meeting."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser(
        "pipeline",
        help="multi-speaker transcription: one transcript stream per speaker",
        description="Transcribe a meeting: voice activity, overlap detection, separation where "
        "people overlap, speaker tracking and one Whisper stream per speaker. Writes "
        "events.jsonl, speakers/S*.txt, NAME.rttm/.srt/.vtt, report.md and timeline.png to --out.",
    )
    p.add_argument("input", nargs="?", help="audio file, or - for raw 16-bit PCM on stdin")
    p.add_argument("--demo", action="store_true", help="the built-in noisy 3-speaker meeting")
    p.add_argument("--mic", action="store_true", help="live from the default microphone")
    p.add_argument("--rate", type=int, help="sample rate of stdin PCM (16000)")
    p.add_argument(
        "--out",
        help="output folder (default: none for live input, pipeline-demo/ "
        "for --demo, NAME.pipeline/ for a file)",
    )
    p.add_argument(
        "--model", help="Whisper weights folder (default: first under weights/, tiny.en first)"
    )
    p.add_argument("--vad", help="Silero VAD weights folder (default weights/silero-vad)")
    p.add_argument(
        "--embedder",
        help="speaker embedder weights (default: weights/ecapa-voxceleb, "
        "else weights/voice-encoder); 'none' turns tracking off",
    )
    p.add_argument(
        "--separator",
        help="MossFormer2 weights (default: the first of weights/mossformer2-ss-16k, "
        "-ss-16k-3spk, -whamr-16k that holds converted weights); 'none' turns separation off",
    )
    p.add_argument(
        "--overlap",
        help="overlap detector: trained Whisper heads with a speaker_count task (`mas train "
        "heads --tasks speaker_count`), 'counter' (the shipped speaker counter) or 'none' "
        "(off); default: the first weights/heads-* with a speaker_count task whose encoder "
        "is under weights/, else the counter",
    )
    p.add_argument("--max-speakers", type=int, default=3)
    p.add_argument("--chunk", type=float, default=0.5, help="seconds of audio per step (0.5)")
    p.add_argument(
        "--min-chunk",
        type=float,
        default=1.0,
        help="decode a speaker's buffer after this much new audio (1.0 s)",
    )
    p.add_argument("--language", help="language code for multilingual Whisper weights")
    p.add_argument("--no-partials", action="store_true", help="emit final events only")
    p.add_argument(
        "--events",
        action="store_true",
        help="print events as JSON lines on stdout (always on for live input)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar or notes")
    p.set_defaults(func=run)


def _component(value):
    if value is None:
        return None
    return False if value.lower() == "none" else value


def run(args) -> int:
    from ..errors import MasError
    from ..pipeline import Pipeline, PipelineConfig, run_pipeline
    from ..pipeline.live import MIC_BEHIND_S, mic_chunks, pcm_chunks, run_live
    from ..pipeline.outputs import write_outputs
    from ..pipeline.record import event_line, spool_for

    modes = [bool(args.input), args.demo, args.mic]
    if sum(modes) != 1:
        raise MasError("give one input: an audio file, - (stdin PCM), --mic or --demo")
    if args.max_speakers < 1:
        raise MasError(f"--max-speakers must be at least 1, got {args.max_speakers}")
    if not 0 < args.chunk <= 30:
        raise MasError(f"--chunk must be more than 0 and at most 30 s, got {args.chunk}")
    if not 0 < args.min_chunk <= 30:
        raise MasError(f"--min-chunk must be more than 0 and at most 30 s, got {args.min_chunk}")
    if args.rate is not None and args.input != "-":
        raise MasError("--rate is the sample rate of raw PCM on stdin (-); a file has its own")
    if args.vad is not None and args.vad.lower() == "none":
        raise MasError(
            "--vad none: the pipeline needs voice activity detection; give Silero VAD weights "
            "or leave --vad out (weights/silero-vad)"
        )
    cfg = PipelineConfig(
        max_speakers=args.max_speakers,
        min_chunk_s=args.min_chunk,
        language=args.language,
        partials=not args.no_partials,
    )
    log = (
        (lambda m: None) if args.quiet else (lambda m: print(f"mas pipeline: {m}", file=sys.stderr))
    )
    kw = dict(
        whisper=args.model,
        vad=args.vad,
        embedder=_component(args.embedder),
        separator=_component(args.separator),
        overlap=_component(args.overlap),
        config=cfg,
        log=log,
    )
    show_progress = not args.quiet and sys.stderr.isatty()

    def print_event(ev: dict) -> None:
        sys.stdout.write(event_line(ev) + "\n")
        sys.stdout.flush()

    if args.input == "-" or args.mic:
        # events go to stdout as decided; the record of them is spooled (to the output
        # folder, or a temporary one), so hours of input do not grow memory
        name = "microphone" if args.mic else "stdin"
        notes: list[str] = []
        dropped: list[float] = []

        def on_drop(seconds: float) -> None:
            if not dropped:  # said once as it happens; the total at the end
                notes.append(
                    f"the pipeline fell {MIC_BEHIND_S:.0f} s behind the microphone: the audio "
                    "not yet processed is dropped when that happens (silence in its place)"
                )
            dropped.append(seconds)

        if args.mic:  # the device is opened before the models load: no microphone fails fast
            chunks = mic_chunks(args.chunk, on_drop=on_drop)
        else:
            chunks = pcm_chunks(sys.stdin.buffer, args.rate or 16000, args.chunk)
        with tempfile.TemporaryDirectory(prefix="mas-live-") as scratch:
            record = spool_for(args.out or scratch)
            try:
                p = Pipeline(record=record, **kw)
                if args.mic:
                    log("listening on the default microphone; Ctrl-C ends")

                def pass_notes() -> None:  # the microphone's, into the run's notes
                    while notes:
                        p.note(notes.pop(0))

                def on_event(ev: dict) -> None:
                    pass_notes()
                    print_event(ev)

                run_live(p, chunks, on_event)
                if dropped:
                    notes.append(
                        f"microphone audio dropped {len(dropped)} time(s), "
                        f"{sum(dropped):.1f} s in all"
                    )
                pass_notes()
                res = p.result()
                if res.stats["audio_s"] == 0:
                    raise MasError(f"{name}: no audio (the input was empty)")
                if args.out:
                    write_outputs(res, args.out, "mic" if args.mic else "stdin")
                    log(f"outputs in {Path(args.out)}/")
            finally:
                record.discard()  # removes only an uncommitted spool
        return 0

    if args.demo:
        from ..pipeline.demo import demo_meeting

        meeting = demo_meeting()
        out = args.out or "pipeline-demo"
        log(
            f"demo meeting: {meeting.mix.size / 16000:.1f} s, 3 speakers, 2 overlaps, "
            "noise at 15 dB SNR (bundled LibriSpeech + VoiceBank-DEMAND audio)"
        )
    else:
        path = Path(args.input)
        out = args.out or f"{path.stem}.pipeline"
    try:
        if args.demo:
            res = run_pipeline(
                meeting.mix, out, chunk_s=args.chunk, progress=show_progress, name="demo", **kw
            )
        else:
            res = run_pipeline(path, out, chunk_s=args.chunk, progress=show_progress, **kw)
    except KeyboardInterrupt as exc:
        res = getattr(exc, "partial_result", None)
        if res is None:  # interrupted while loading or finishing: nothing was written
            raise
        _print_result(res, out)
        raise
    if args.events:
        for ev in res.events:
            print_event(ev)
    _print_result(res, out, meeting.texts if args.demo else None)
    return 0


def _print_result(res, out, references: dict | None = None) -> None:
    print(
        f"{len(res.transcripts)} speaker(s); {res.stats['audio_s']:.1f} s of audio in "
        f"{res.stats['wall_s']:.1f} s (RTF {res.stats['rtf']})"
    )
    for spk, text in res.transcripts.items():
        print(f"[{spk}] {text}")
    if references:
        print("\nwhat they said (reference, in order of first turn):")
        for lab, text in references.items():
            print(f"[{lab}] {text.capitalize()}")
    print(f"outputs in {Path(out)}/")
