"""When the `mas` commands show tqdm progress bars: on a terminal, unless `--quiet`."""

from __future__ import annotations

import sys


def show_progress(quiet: bool = False, force: bool = False) -> bool:
    """True when a command should draw progress bars on stderr: `force` (e.g. `--progress`)
    always, `quiet` never, else only when stderr is a terminal (not a log file or a pipe)."""
    if force:
        return True
    if quiet:
        return False
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False


def add_quiet_flag(parser) -> None:
    """Add `--quiet/-q` (no progress bars) to an argparse parser."""
    parser.add_argument(
        "--quiet",
        "-q",
        action="store_true",
        help="no progress bars (they are off anyway when stderr is not a terminal)",
    )
