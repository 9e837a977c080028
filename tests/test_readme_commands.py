"""The fast part of tools/check_readme_commands.py (issue 17, proof): every README shell line
is either run or skipped for a stated reason, and a failing line fails the check. The full
check (a fresh venv from the quickstart's setup, every README command) runs in .ci/run."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from _helpers import load_tool

from mlx_audio_stack.paths import REPO_ROOT

check = load_tool("check_readme_commands")


def test_every_readme_command_runs_or_has_a_reason():
    lines = check.shell_lines(REPO_ROOT / "README.md")
    assert len(lines) >= 10
    ran = [cmd for _, cmd in lines if check.skip_reason(cmd, has_pytest=True) is None]
    # what a new user can run offline must be run, not skipped
    musts = ("mas weights get silero-vad", "mas vad", "mas transcribe", "mas qa run")
    for must in musts + ("mas weights get voice-encoder", "mas embed", "mas verify"):
        assert any(cmd.startswith(must) for cmd in ran), must
    for _, cmd in lines:
        why = check.skip_reason(cmd, has_pytest=True)
        hub_only = "ecapa-voxceleb" in cmd or "mossformer2" in cmd.lower()
        if cmd.startswith(("mas embed", "mas verify", "mas separate", "mas convert")):
            assert (why is not None and "hub-only" in why) == hub_only, cmd


def test_readme_parsing():
    text = "\n".join(
        [
            "```",
            "mas qa run x.jsonl --task asr [--deep] [--json out.json]   # a comment",
            "```",
            "```python",
            "mas = 1",
            "```",
            "```",
            "mas convert <file> --out weights/<name>",
            "mas embed a.wav --model weights/ecapa-voxceleb",
            "echo not a command",
            "```",
        ]
    )
    readme = Path(check.tempfile.mkdtemp()) / "README.md"
    readme.write_text(text)
    lines = check.shell_lines(readme)
    assert lines == [
        (2, "mas qa run x.jsonl --task asr"),
        (8, "mas convert <file> --out weights/<name>"),
        (9, "mas embed a.wav --model weights/ecapa-voxceleb"),
    ]
    assert "syntax" in check.skip_reason(lines[1][1], True)
    assert "hub-only" in check.skip_reason(lines[2][1], True)
    assert "test extra" in check.skip_reason("pytest data_quality", has_pytest=False)


def test_a_failing_readme_command_fails_the_check(tmp_path, capsys):
    from mlx_audio_stack.errors import WeightsError
    from mlx_audio_stack.weights_get import get_weights

    try:  # the check converts these itself; skip early when they cannot be had here
        get_weights("whisper-tiny.en", tmp_path / "probe", offline=True)
    except WeightsError as exc:
        pytest.skip(f"offline weights unavailable: {exc}")
    readme = tmp_path / "README.md"
    ok = "```\nmas weights list\nmas vad meeting.wav --format txt\nmas separate mix.wav\n```\n"
    readme.write_text(ok)
    args = ["--python", sys.executable, "--readme", str(readme), "--workdir", str(tmp_path / "w")]
    assert check.main(args) == 0
    out = capsys.readouterr().out
    assert "ok" in out and "vad meeting.wav" in out and "needs hub-only weights" in out
    assert (tmp_path / "w" / "weights" / "silero-vad" / "config.json").is_file()
    readme.write_text(ok.replace("--format txt", "--format nope"))
    assert check.main(args) == 1
    assert "FAIL" in capsys.readouterr().out
