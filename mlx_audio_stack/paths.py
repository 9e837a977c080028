"""Where things live: the repository, the weights folder, the shared real-speech data."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent
ASSETS_DIR = PACKAGE_DIR / "assets"
# A short LibriSpeech clip (CC BY 4.0, see assets/NOTICE.md) used by the quickstart demo.
DEMO_CLIP = ASSETS_DIR / "1089-134686-0000.flac"


def weights_dir() -> Path:
    """Root of converted weights: $MAS_WEIGHTS_DIR, else <repo>/weights (or ./weights)."""
    env = os.environ.get("MAS_WEIGHTS_DIR")
    if env:
        return Path(env)
    if (REPO_ROOT / "pyproject.toml").exists():
        return REPO_ROOT / "weights"
    return Path.cwd() / "weights"


def data_dir() -> Path | None:
    """The shared real-speech folder: $MAS_DATA_DIR, else ../shared/data beside the repo."""
    env = os.environ.get("MAS_DATA_DIR")
    candidates = (
        [Path(env)] if env else [REPO_ROOT.parent / "shared" / "data", Path("/work/shared/data")]
    )
    for c in candidates:
        if (c / "MANIFEST.tsv").exists():
            return c
    return None
