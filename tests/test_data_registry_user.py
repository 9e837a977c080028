"""A user's derived data is registered with the user's data, never in the installed package
(issue 17, item 4): `mas data manifest shared --out-dir DIR` leaves the tracked
mlx_audio_stack/data/derived.json alone and `mas data index --check` stays green."""

from __future__ import annotations

import json

import pytest

from mlx_audio_stack.cli import main
from mlx_audio_stack.data import registry
from mlx_audio_stack.paths import REPO_ROOT, data_dir


def test_only_the_projects_own_manifest_folder_uses_the_project_registry(tmp_path):
    assert registry.registry_for(REPO_ROOT / registry.SHARED_MANIFESTS) == registry.DERIVED_JSON
    assert registry.registry_for(tmp_path / "m") == tmp_path / "m" / "derived.json"
    assert registry.registry_for(REPO_ROOT / "reports") == REPO_ROOT / "reports" / "derived.json"


@pytest.mark.parametrize("named", [False, True])
def test_shared_manifests_into_a_user_folder_leave_the_package_alone(tmp_path, capsys, named):
    if data_dir() is None:
        pytest.skip("no shared data folder (set MAS_DATA_DIR)")
    tracked = registry.DERIVED_JSON.read_bytes()
    out = tmp_path / "manifests"
    args = ["data", "manifest", "shared", "--out-dir", str(out)]
    reg = tmp_path / "elsewhere" / "mine.json" if named else out / "derived.json"
    if named:
        args += ["--registry", str(reg)]
    assert main(args) == 0
    assert f"registered in {reg}" in capsys.readouterr().out
    assert registry.DERIVED_JSON.read_bytes() == tracked
    items = json.loads(reg.read_text())
    assert len(items) == len(registry.LOCAL_BUILDS)
    for item in items:
        assert item["location"].startswith(str(out.resolve()))
        assert (out / item["location"].rsplit("/", 1)[1]).is_file()
    assert named == ("--registry" in items[0]["command"])
    assert not (named and (out / "derived.json").exists())
    assert main(["data", "index", "--check"]) == 0
