"""pytest face of the QA suite: `pytest data_quality --manifest X --task T [--deep]`.

Each registered check is one test that fails listing its error findings. Without --manifest
every test is skipped with a reason (the default `pytest` run collects only tests/).
"""

from __future__ import annotations

import pytest

import mlx_audio_stack  # noqa: F401  (loads the fast BLAS first, as every entry point does)


def pytest_addoption(parser):
    g = parser.getgroup("data_quality", "data-QA suite over a manifest")
    g.addoption("--manifest", help="JSON-lines manifest to check")
    g.addoption("--task", default="asr", help="training task whose thresholds apply (asr)")
    g.addoption("--deep", action="store_true", help="decode every segment")
    g.addoption("--probs", help="out-of-sample probabilities for the label-error check")
    g.addoption("--mapping", help="module:function label mapping to test for determinism")
    g.addoption("--no-record", action="store_true", help="do not store the gate verdict")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--manifest"):
        return
    skip = pytest.mark.skip(
        reason="data-QA suite: no manifest given (pytest data_quality --manifest X --task T)"
    )
    for item in items:
        if "data_quality" in str(item.fspath):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def qa_result(request):
    from mlx_audio_stack.data import run_qa

    opt = request.config.getoption
    return run_qa(
        opt("--manifest"),
        opt("--task"),
        deep=opt("--deep"),
        probs=opt("--probs"),
        mapping_fn=opt("--mapping"),
        progress=False,
        record=not opt("--no-record"),
    )
