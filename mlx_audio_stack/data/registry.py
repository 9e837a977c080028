"""The data registry: every dataset the product knows, every derived artifact, and the
recipes that build manifests of the local real-speech folder. DATA_INDEX.md is generated from
it (`mas data index`); a test fails when the committed index is out of date.

Derived artifacts (manifests, soft labels, encoder feature caches) of the project are listed in
`derived.json` beside this file; tools that build one call `register_derived(...)`. What a user
derives from their own data is registered with their data (`<out dir>/derived.json`, or a file
they name), never in the installed package (`registry_for`).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..paths import REPO_ROOT
from .manifest import manifest_hash

DERIVED_JSON = Path(__file__).with_name("derived.json")
INDEX_PATH = REPO_ROOT / "DATA_INDEX.md"
SHARED_MANIFESTS = "reports/qa/manifests"  # repo-relative home of the shared-data manifests


@dataclass(frozen=True)
class Dataset:
    name: str
    purpose: str
    license: str
    commercial: str  # "yes", "no", or a short condition
    size: str  # the full corpus
    hours: str
    speakers: str
    url: str
    local: str  # what of it is in the shared real-speech folder (static, not probed)
    adapter: str | None = None


DATASETS: tuple[Dataset, ...] = (
    Dataset(
        "librispeech",
        "ASR tests/benchmarks, speaker embeddings, mixtures",
        "CC BY 4.0",
        "yes",
        "292k utterances",
        "~1000",
        "2484",
        "https://www.openslr.org/12",
        "105 transcribed utts (test-other, test-clean, dev-clean) + 254 untranscribed "
        "(one per train-clean-100 speaker)",
        "librispeech",
    ),
    Dataset(
        "fsdd",
        "8 kHz tests, digit ASR smoke data",
        "CC BY-SA 4.0",
        "yes (share-alike)",
        "3000 recordings",
        "0.37",
        "6",
        "https://github.com/Jakobovski/free-spoken-digit-dataset",
        "all 3000",
        "fsdd",
    ),
    Dataset(
        "ami",
        "diarization, overlap / speaker-count, meeting transcription",
        "CC BY 4.0",
        "yes",
        "100 h of meetings",
        "~100",
        "~189",
        "https://groups.inf.ed.ac.uk/ami/corpus/",
        "10 x 30 s clips with RTTM (pyannote debug set) + one 6 s headset clip",
        "rttm",
    ),
    Dataset(
        "valentini",
        "denoising / noisy-speech tests (VoiceBank-DEMAND)",
        "CC BY 4.0",
        "yes",
        "~12k clean/noisy pairs",
        "~9.4 (x2)",
        "30",
        "https://datashare.ed.ac.uk/handle/10283/2791",
        "6 clean/noisy pairs of p287",
        "csv",
    ),
    Dataset(
        "ljspeech",
        "single-speaker read speech",
        "public domain",
        "yes",
        "13,100 clips",
        "~24",
        "1",
        "https://keithito.com/LJ-Speech-Dataset/",
        "2 clips",
        "csv",
    ),
    Dataset(
        "ravdess",
        "emotion head (8 classes)",
        "CC BY-NC-SA 4.0",
        "no (non-commercial)",
        "1440 speech files (+ song)",
        "~1.5",
        "24",
        "https://zenodo.org/record/1188976",
        "none",
        "ravdess",
    ),
    Dataset(
        "crema-d",
        "emotion head (6 classes)",
        "ODbL 1.0 (database), DbCL (contents)",
        "yes (attribution, share-alike of the database)",
        "7442 clips",
        "~5.3",
        "91",
        "https://github.com/CheyneyComputerScience/CREMA-D",
        "none",
        "cremad",
    ),
)


@dataclass(frozen=True)
class LocalBuild:
    """How a manifest of (part of) the shared real-speech folder is built, and its QA task."""

    manifest: str
    dataset: str
    adapter: str
    source: str  # relative to the shared data folder
    options: dict = field(default_factory=dict)
    task: str = "asr"


LOCAL_BUILDS: tuple[LocalBuild, ...] = (
    LocalBuild("librispeech", "librispeech", "librispeech", "librispeech", task="asr"),
    LocalBuild(
        "librispeech_untranscribed",
        "librispeech",
        "librispeech",
        "librispeech_untranscribed",
        task="gender",
    ),
    LocalBuild("fsdd", "fsdd", "fsdd", "fsdd", task="asr"),
    LocalBuild(
        "ami_windows",
        "ami",
        "rttm",
        "ami_meeting_clips/debug.train.rttm",
        {"mode": "windows", "window": 5.0},
        task="speaker_count",
    ),
    LocalBuild(
        "ami_es2011a",
        "ami",
        "csv",
        "MANIFEST.tsv",
        {"where": {"relpath": "ami_es2011a/"}, "dataset": "ami", "license": "CC-BY-4.0"},
    ),
    LocalBuild(
        "valentini",
        "valentini",
        "csv",
        "MANIFEST.tsv",
        {
            "where": {"relpath": "valentini/"},
            "columns": {"id": "relpath"},
            "dataset": "valentini",
            "license": "CC-BY-4.0",
        },
        task="audio",
    ),
    LocalBuild(
        "ljspeech",
        "ljspeech",
        "csv",
        "MANIFEST.tsv",
        {"where": {"relpath": "ljspeech/"}, "dataset": "ljspeech", "license": "public-domain"},
    ),
)


@dataclass
class DerivedArtifact:
    """Something built from a manifest: a manifest of local data, soft labels, a feature cache."""

    name: str
    kind: str  # "manifest", "soft-labels", "feature-cache", ...
    location: str  # repo-relative or absolute
    command: str  # the command that regenerates it
    source_manifest: str | None = None
    source_manifest_hash: str | None = None
    description: str = ""


def load_derived(registry: Path | None = None) -> list[DerivedArtifact]:
    """The artifacts listed in `registry` (default: the project's derived.json)."""
    registry = Path(registry) if registry else DERIVED_JSON
    if not registry.is_file():
        return []
    return [DerivedArtifact(**d) for d in json.loads(registry.read_text(encoding="utf-8"))]


def register_derived(artifact: DerivedArtifact, registry: Path | None = None) -> Path:
    """Add or replace (by name) a derived artifact in `registry` (default: the project's
    derived.json; then run `mas data index`); written atomically. The source manifest's hash is
    filled in when the file exists. Returns the registry's path."""
    registry = Path(registry) if registry else DERIVED_JSON
    if artifact.source_manifest and not artifact.source_manifest_hash:
        src = _abs(artifact.source_manifest)
        if src.is_file():
            artifact.source_manifest_hash = manifest_hash(src)
    items = {a.name: a for a in load_derived(registry)}
    items[artifact.name] = artifact
    text = json.dumps([asdict(a) for a in sorted(items.values(), key=lambda a: a.name)], indent=1)
    registry.parent.mkdir(parents=True, exist_ok=True)
    tmp = registry.with_name(f".{registry.name}.{os.getpid()}.tmp")
    tmp.write_text(text + "\n", encoding="utf-8")
    os.replace(tmp, registry)
    return registry


def registry_for(out_dir: Path) -> Path:
    """Where manifests built into `out_dir` are registered: the project's derived.json only
    for the project's own folder of shared-data manifests in a source checkout; anything else
    is the user's data, registered beside it in `out_dir/derived.json`."""
    own = REPO_ROOT / SHARED_MANIFESTS
    if (REPO_ROOT / "pyproject.toml").is_file() and Path(out_dir).resolve() == own.resolve():
        return DERIVED_JSON
    return Path(out_dir) / "derived.json"


def _abs(p: str) -> Path:
    return Path(p) if os.path.isabs(p) else REPO_ROOT / p


def _size(p: Path) -> str:
    if not p.exists():
        return "not built here"
    n = (
        p.stat().st_size
        if p.is_file()
        else sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    )
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def _tracked(p: Path) -> bool:
    # size/hash only for artifacts committed in the repo: the index must not depend on
    # what happens to be built on this machine
    try:
        return p.resolve().is_relative_to(REPO_ROOT) and not any(
            part in ("weights", ".mas-cache") for part in p.relative_to(REPO_ROOT).parts
        )
    except ValueError:
        return False


def render_index() -> str:
    """The text of DATA_INDEX.md (a pure function of the registry and committed files)."""
    lines = [
        "# Data index",
        "",
        "Generated by `mas data index` from `mlx_audio_stack/data/registry.py` and "
        "`mlx_audio_stack/data/derived.json`; do not edit by hand (a test compares).",
        "",
        "## Datasets",
        "",
        "| name | used for | license | commercial use | size | hours | speakers | source | "
        "local copy (shared data) | adapter |",
        "|---|---|---|---|---|---:|---:|---|---|---|",
    ]
    for d in DATASETS:
        lines.append(
            f"| {d.name} | {d.purpose} | {d.license} | {d.commercial} | {d.size} | "
            f"{d.hours} | {d.speakers} | {d.url} | {d.local} | "
            f"{d.adapter or '-'} |"
        )
    lines += [
        "",
        "Local copies live in the shared real-speech folder (`$MAS_DATA_DIR`, default "
        "`../shared/data`); `mas data index --status` shows what this machine has.",
        "",
        "## Derived artifacts",
        "",
        "| name | kind | location | size | source manifest (sha256) | command |",
        "|---|---|---|---|---|---|",
    ]
    for a in sorted(load_derived(), key=lambda a: a.name):
        p = _abs(a.location)
        size = _size(p) if _tracked(p) else "local (not in git)"
        src = (
            f"`{a.source_manifest}` ({(a.source_manifest_hash or '-')[:12]})"
            if a.source_manifest
            else "-"
        )
        lines.append(f"| {a.name} | {a.kind} | `{a.location}` | {size} | {src} | `{a.command}` |")
    return "\n".join(lines) + "\n"


def write_index(path: Path = INDEX_PATH) -> Path:
    path.write_text(render_index(), encoding="utf-8")
    return path


def index_is_current(path: Path = INDEX_PATH) -> bool:
    return path.is_file() and path.read_text(encoding="utf-8") == render_index()


def local_status(data_dir: Path | None) -> list[tuple[str, str]]:
    """(build name, 'present'/'missing ...') for each local recipe on this machine."""
    out = []
    for b in LOCAL_BUILDS:
        if data_dir is None:
            out.append((b.manifest, "missing: no shared data folder (set MAS_DATA_DIR)"))
        else:
            src = data_dir / b.source
            out.append((b.manifest, "present" if src.exists() else f"missing: {src}"))
    return out


def build_local(
    data_dir: Path,
    out_dir: Path,
    names: list[str] | None = None,
    registry: Path | None = None,
) -> list[tuple[LocalBuild, Path]]:
    """Build the manifests of the shared data folder into out_dir and register them in
    `registry` (default: `registry_for(out_dir)`)."""
    from .adapters import ADAPTERS
    from .manifest import write_manifest

    registry = Path(registry) if registry else registry_for(out_dir)
    project = registry.resolve() == DERIVED_JSON.resolve()
    made = []
    for b in LOCAL_BUILDS:
        if names and b.manifest not in names:
            continue
        recs = ADAPTERS[b.adapter](data_dir / b.source, **b.options)
        path = write_manifest(recs, out_dir / f"{b.manifest}.jsonl")
        if project:  # repo-relative: the committed registry must not name this machine's paths
            loc = os.path.relpath(path.resolve(), REPO_ROOT)
            cmd = f"mas data manifest shared --out-dir {os.path.dirname(loc)}"
        else:
            loc = str(path.resolve())
            cmd = f"mas data manifest shared --out-dir {path.resolve().parent}"
            if registry.resolve() != (path.resolve().parent / "derived.json"):
                cmd += f" --registry {registry.resolve()}"
        register_derived(
            DerivedArtifact(
                f"manifest:{b.manifest}",
                "manifest",
                loc,
                cmd,
                description=f"{b.dataset} ({b.adapter} adapter) of the shared real-speech data",
            ),
            registry,
        )
        made.append((b, path))
    return made
