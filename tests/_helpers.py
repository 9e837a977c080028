"""Helpers shared by the tests and the fixture scripts in tools/: WER, the LibriSpeech listing,
committed reference fixtures, loading a tools/ script as a module.

Nothing here needs torch or a reference library; the fixture scripts import it too (they put
tests/ on sys.path), so the tests and the fixtures list the same utterances the same way.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import re
import types
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"


def librispeech(shared: Path) -> list[tuple[Path, str]]:
    """Every transcribed LibriSpeech utterance of the shared data: (flac path, transcript),
    in sorted transcript-file order (the order every fixture and test indexes)."""
    out = []
    for trans in sorted((shared / "librispeech").rglob("*.trans.txt")):
        for line in trans.read_text().splitlines():
            utt, text = line.split(" ", 1)
            out.append((trans.parent / f"{utt}.flac", text))
    return out


def _words(s: str) -> str:
    return " ".join(re.sub(r"[^a-z' ]", " ", s.lower()).split())


def wer(ref: str, hyp: str) -> float:
    """Word error rate (jiwer) after lower-casing and dropping everything but letters and '."""
    if importlib.util.find_spec("jiwer") is None:
        import pytest

        pytest.skip("jiwer not installed: tools/install_refs.sh (requirements/ref-whisper.txt)")
    import jiwer

    r, h = _words(ref), _words(hyp)
    if not r:
        return float(bool(h))
    return float(jiwer.wer(r, h or "<empty>"))


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def installed_version(dist: str) -> str | None:
    """The installed distribution's version, None when it is not installed."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def load_fixture(name: str) -> tuple[dict, dict[str, np.ndarray]]:
    """tests/fixtures/<name>/reference.json and, when present, its reference.npz arrays."""
    folder = FIXTURES / name
    meta = json.loads((folder / "reference.json").read_text())
    npz = folder / "reference.npz"
    arrays = dict(np.load(npz)) if npz.exists() else {}
    return meta, arrays


def write_fixture(out: Path, meta: dict, arrays: dict[str, np.ndarray]) -> None:
    """Write a fixture folder's reference.json + reference.npz (each to a temporary file, then
    renamed): what the tools/make_*_fixtures.py scripts commit and `load_fixture` reads."""
    import os

    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "reference.json.tmp"
    tmp.write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n")
    tmp_npz = out / "reference.tmp.npz"
    np.savez_compressed(tmp_npz, **arrays)
    os.replace(tmp, out / "reference.json")
    os.replace(tmp_npz, out / "reference.npz")


def fixture_main(argv: list[str] | None, doc: str, name: str, build) -> int:
    """The command line of a tools/make_*_fixtures.py script: `--out` (default
    tests/fixtures/<name>), the shared data found, `build(shared) -> (meta, arrays)` run and
    written with `write_fixture`."""
    import argparse

    from mlx_audio_stack.paths import data_dir

    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    p.add_argument("--out", default=str(FIXTURES / name))
    out = Path(p.parse_args(argv).out)
    shared = data_dir()
    if shared is None:
        raise SystemExit("shared real-speech data not found: set MAS_DATA_DIR")
    meta, arrays = build(shared)
    write_fixture(out, meta, arrays)
    print(f"wrote {out} ({', '.join(f'{k} {v}' for k, v in meta['reference'].items())})")
    return 0


def check_fixture_audio(meta: dict, shared: Path) -> None:
    """The shared audio the fixture was made from is the audio here (else regenerate it)."""
    bad = [rel for rel, digest in meta["audio"].items() if sha256(shared / rel) != digest]
    assert not bad, (
        f"shared audio differs from the fixture's ({bad[:3]}...): rerun {meta['made_by']}"
    )


def check_reference_version(meta: dict, dist: str) -> None:
    """A fixture made with another version of its reference fails loudly (regenerate it)."""
    import pytest

    have = installed_version(dist)
    if have is None:
        pytest.skip(f"{dist} not installed: cannot check the fixture's recorded version")
    want = meta["reference"][dist]
    assert have == want, (
        f"tests/fixtures made with {dist} {want}, installed {have}: "
        f"rerun {meta['made_by']} and commit the new fixture"
    )


def load_tool(name: str) -> types.ModuleType:
    """Import tools/<name>.py as a module (tools/ is not a package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# every reference library a test or fixture script may import: absent under `blocked_env()`
REFERENCE_MODULES = (
    "torch",
    "torchaudio",
    "whisper",
    "transformers",
    "faster_whisper",
    "ctranslate2",
    "speechbrain",
    "resemblyzer",
    "silero_vad",
    "onnxruntime",
    "clearvoice",
)


def blocked_env(blocked: tuple[str, ...] = REFERENCE_MODULES) -> dict[str, str]:
    """Environment for a subprocess in which `blocked` cannot be imported (tests/_blocker's
    sitecustomize) and this checkout's mlx_audio_stack is the one imported."""
    import os

    path = [str(ROOT / "tests" / "_blocker"), str(ROOT), os.environ.get("PYTHONPATH", "")]
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in path if p),
        "MAS_BLOCK_IMPORTS": ",".join(blocked),
    }
