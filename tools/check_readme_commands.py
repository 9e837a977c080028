#!/usr/bin/env python3
"""Run what the README tells a new user to run, in a venv made by the quickstart's setup alone.

1. `make setup VENV=<tmp>/venv` (the setup `make demo` runs first: no test extra, no PyTorch),
   unless `--python PY` names an interpreter that already has the package (the tests do this).
2. `mas weights get` for every model reachable without the hub: whisper-tiny.en, whisper-base,
   silero-vad, and voice-encoder when `mas weights list` knows it.
3. Every `mas ...` line of the README's shell blocks, in a scratch folder where the README's
   example inputs exist (talk.flac is the bundled clip, meeting.wav an AMI clip, ../shared/data
   the shared data, cohort.npy embeddings of 120 other speakers' utterances) and weights/ is the
   folder step 2 filled. A line is skipped, with its reason
   printed, only when it needs hub-only weights, is a syntax summary (`<file>`), is the
   quickstart itself, needs a microphone, or needs the test extra.

Fails (exit 1) on any non-zero exit. Usage:
    python tools/check_readme_commands.py            # fresh venv; ~5 min on 2 cores
    python tools/check_readme_commands.py --python .venv/bin/python   # reuse a venv
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OFFLINE_WEIGHTS = ["whisper-tiny.en", "whisper-base", "silero-vad"]
# weights no `mas weights get` can fetch without the Hugging Face hub
HUB_ONLY = (
    "ecapa-voxceleb",
    "mossformer2",
    "MossFormer2_SS",
    "spkrec-ecapa",
    "whisper-small",
    "whisper-medium",
    "whisper-large",
    "whisper-turbo",
)


def shell_lines(readme: Path) -> list[tuple[int, str]]:
    """(line number, command) for each `mas`/`make`/`pytest` line of the README's plain code
    blocks (no language tag), with trailing comments and `[optional]` parts removed."""
    out, in_block, lang = [], False, ""
    for no, line in enumerate(readme.read_text(encoding="utf-8").splitlines(), start=1):
        if line.startswith("```"):
            in_block, lang = (not in_block), line[3:].strip()
            continue
        if not in_block or lang:
            continue
        cmd = re.sub(r"\s+#.*$", "", line).strip()
        cmd = re.sub(r"\s*\[[^\]]*\]", "", cmd)  # optional flags shown as [--deep]
        if re.match(r"^(mas|make|pytest)\b", cmd):
            out.append((no, cmd))
    return out


def skip_reason(cmd: str, has_pytest: bool) -> str | None:
    """Why `cmd` cannot run here, or None when it must."""
    if "<" in cmd or "..." in cmd:
        return "a syntax summary, not a command"
    if "--mic" in cmd:
        return "needs a microphone (CI machines have none)"
    if cmd.startswith("make "):
        return "the quickstart itself (this check ran its setup; `make test` is CI's command)"
    hub = [w for w in HUB_ONLY if w in cmd]
    if not hub and re.match(r"^mas separate\b", cmd) and "--model" not in cmd:
        hub = ["MossFormer2, the --model it needs"]
    if hub:
        return f"needs hub-only weights ({hub[0]}; `mas weights get` says what to bring)"
    if cmd.startswith("pytest") and not has_pytest:
        return "needs the test extra (pytest), which the quickstart's setup does not install"
    return None


def prepare_inputs(work: Path, python: str, data: Path | None) -> None:
    """The README's example inputs, made from the bundled clip and the shared data."""
    clip = REPO / "mlx_audio_stack" / "assets" / "1089-134686-0000.flac"
    shutil.copyfile(clip, work / "talk.flac")
    ami = data / "ami_meeting_clips" / "trn00.wav" if data else None
    code = (
        "import sys, soundfile as sf; x, sr = sf.read(sys.argv[1]); "
        "sf.write('a.wav', x, sr); sf.write('b.wav', x[::-1], sr); sf.write('b.flac', x, sr); "
        "sf.write('meeting.wav', *sf.read(sys.argv[2])) "
        "if len(sys.argv) > 2 else sf.write('meeting.wav', x, sr)\n"
        "try:\n    sf.write('b.mp3', x, sr)\nexcept Exception:\n    pass"
    )
    args = [python, "-c", code, str(clip)] + ([str(ami)] if ami and ami.exists() else [])
    subprocess.run(args, cwd=work, check=True)
    if data:  # the README's ../shared/data
        (work.parent / "shared").mkdir(exist_ok=True)
        link = work.parent / "shared" / "data"
        if not link.exists():
            link.symlink_to(data)


def run(cmd: list[str], cwd: Path, env: dict, log: list) -> bool:
    t = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    secs = time.perf_counter() - t
    ok = done.returncode == 0
    shown = shlex.join(cmd)
    shown = shown if len(shown) < 300 else shown[:240] + f" ... ({len(cmd)} arguments)"
    print(f"  {'ok  ' if ok else 'FAIL'} {secs:6.1f} s  {shown}", flush=True)
    if not ok:
        print("    " + (done.stderr or done.stdout).strip()[-1500:].replace("\n", "\n    "))
    log.append((shlex.join(cmd), ok, secs))
    return ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--python", help="use this interpreter's mlx_audio_stack (skip the setup)")
    ap.add_argument("--workdir", help="scratch folder (default: a temporary one, removed)")
    ap.add_argument("--readme", default=str(REPO / "README.md"))
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    tmp = Path(args.workdir or tempfile.mkdtemp(prefix="mas-readme-"))
    tmp.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAS_WEIGHTS")}
    env["MAS_WEIGHTS_DIR"] = str(tmp / "weights")
    log: list = []
    try:
        if args.python:
            python = args.python
        else:
            print(f"setup: make setup VENV={tmp / 'venv'}", flush=True)
            setup = ["make", "-s", "setup", f"VENV={tmp / 'venv'}"]
            if not run(setup, REPO, env, log):
                return 1
            python = str(tmp / "venv" / "bin" / "python")
        mas = [python, "-m", "mlx_audio_stack"]
        known = subprocess.run(mas + ["weights", "list"], env=env, capture_output=True, text=True)
        names = OFFLINE_WEIGHTS + (["voice-encoder"] if "voice-encoder" in known.stdout else [])
        print("weights: every model reachable without the hub", flush=True)
        for name in names:
            run(mas + ["weights", "get", name, "--offline", "--quiet"], REPO, env, log)
        work = tmp / "work"
        work.mkdir(exist_ok=True)
        (work / "weights").unlink(missing_ok=True)
        (work / "weights").symlink_to(tmp / "weights")
        data = None
        probe = subprocess.run(
            [python, "-c", "from mlx_audio_stack.paths import data_dir; print(data_dir() or '')"],
            env=env,
            capture_output=True,
            text=True,
        )
        if probe.stdout.strip():
            data = Path(probe.stdout.strip())
        prepare_inputs(work, python, data)
        has_pytest = (
            subprocess.run([python, "-c", "import pytest"], capture_output=True).returncode == 0
        )
        print(f"README commands (in {work}):", flush=True)
        skipped = []
        for no, cmd in shell_lines(Path(args.readme)):
            why = skip_reason(cmd, has_pytest)
            if why is None and "../shared/data" in cmd and data is None:
                why = "needs the shared data folder (set MAS_DATA_DIR)"
            if why is None and "b.mp3" in cmd and not (work / "b.mp3").exists():
                why = "this libsndfile cannot write the example's mp3"
            if why:
                print(f"  skip          README:{no} {cmd}\n                ({why})")
                skipped.append((no, cmd, why))
                continue
            words = shlex.split(cmd)
            cwd = work
            if words[0] == "pytest":  # the QA suite's own options live in the repo's conftest
                cwd = REPO
                words = [str(work / w) if (work / w).exists() else w for w in words]
            words = mas + words[1:] if words[0] == "mas" else [python, "-m", *words]
            if "--output-dir" in words:
                (work / "out").mkdir(exist_ok=True)
            if "cohort.npy" in words and not (work / "cohort.npy").exists() and data:
                # the README's impostor cohort: embeddings of other speakers' utterances,
                # made by the same default embedder `mas verify` then uses
                # 120 of them: the README's --top-k 100 needs at least 100
                others = sorted((data / "librispeech_untranscribed").rglob("*.flac"))[:120]
                embed = mas + ["embed", *map(str, others), "--format", "npy", "--quiet"]
                run(embed + ["--out", "cohort.npy"], work, env, log)
            run(words, cwd, env, log)
        failed = [c for c, ok, _ in log if not ok]
        print(
            f"README check: {len(log) - len(failed)} commands ran ok, {len(failed)} failed, "
            f"{len(skipped)} skipped ({time.perf_counter() - t0:.0f} s)"
        )
        return 1 if failed else 0
    finally:
        if not args.workdir:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
