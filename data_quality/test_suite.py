"""One test per registered check; see conftest.py for the options."""

from __future__ import annotations

import pytest

from data_quality import CHECKS
from data_quality import checks as _checks  # noqa: F401  (registers the checks)


@pytest.mark.parametrize("check_id", list(CHECKS))
def test_check(qa_result, check_id, request):
    if CHECKS[check_id].deep_only and not qa_result.deep:
        pytest.skip(f"{check_id} runs only with --deep")
    errors = [
        f for f in qa_result.findings if f.check.split(".")[0] == check_id and f.severity == "error"
    ]
    if errors:
        listed = "\n".join(f.line() for f in errors[:20])
        more = f"\n... {len(errors) - 20} more" if len(errors) > 20 else ""
        pytest.fail(
            f"{len(errors)} error findings in {qa_result.manifest}:\n{listed}{more}", pytrace=False
        )
