"""Run many `mas` command lines in one process (tests/test_hostile_inputs.py).

    python tests/_hostile_driver.py CASES.json CORPUS OUT_ROOT

Prints one JSON object per case: id, rc, stderr, seconds, leftover files of its output folder.
A crash (signal) or a hang kills the whole driver, which the test reports.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import time
from pathlib import Path


def main() -> None:
    cases_path, corpus, out_root = sys.argv[1:4]
    from mlx_audio_stack.cli import main as mas

    cases = json.loads(Path(cases_path).read_text())
    for i, case in enumerate(cases):
        out = Path(out_root) / str(i)
        out.mkdir(parents=True)
        argv = [a.replace("{C}", corpus).replace("{O}", str(out)) for a in case["argv"]]
        err, sink = io.StringIO(), io.StringIO()
        t0 = time.perf_counter()
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(sink):
                rc = mas(argv)
        except SystemExit as exc:  # argparse
            rc = exc.code
        except BaseException as exc:  # noqa: BLE001 - reported, the test fails on it
            rc = f"escaped {type(exc).__name__}: {exc}"
        seconds = time.perf_counter() - t0
        left = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
        rec = {"id": case["id"], "rc": rc, "stderr": err.getvalue(), "seconds": seconds}
        print(json.dumps({**rec, "left": left}), flush=True)


if __name__ == "__main__":
    main()
