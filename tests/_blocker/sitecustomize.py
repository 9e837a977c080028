"""Makes the modules named in MAS_BLOCK_IMPORTS (comma-separated top-level names) absent for
this interpreter, as on a machine where they are not installed: importing one (or any of its
submodules) raises ModuleNotFoundError and `importlib.util.find_spec` returns None for it.
(`sys.modules[name] = None` is not enough: libraries such as scipy look modules up there.)

Python imports `sitecustomize` at start-up from sys.path, so a test runs a subprocess with
this folder first on PYTHONPATH (`blocked_env` in tests/_helpers.py). Used by the torch-free
smoke runner and by the parity tests' runs against their committed fixtures.
"""

import importlib.abc
import importlib.util
import os
import sys

BLOCKED = frozenset(filter(None, os.environ.get("MAS_BLOCK_IMPORTS", "").split(",")))


class _Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked for this run)", name=name)
        return None


_find_spec = importlib.util.find_spec


def _find_spec_unless_blocked(name, package=None):
    if name.partition(".")[0] in BLOCKED:
        return None
    return _find_spec(name, package)


if BLOCKED:
    sys.meta_path.insert(0, _Blocker())
    importlib.util.find_spec = _find_spec_unless_blocked
