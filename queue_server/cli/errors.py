"""CLI failures, each reported as one line on stderr naming the value and the fix."""

from __future__ import annotations

import sys
from typing import NoReturn


class CliError(Exception):
    """A failure the user can fix; the message names the value and what to do."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def exit_with(error: CliError) -> NoReturn:
    """Print the error as one line on stderr and leave with its exit code."""
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else "failed"
    sys.stderr.write(f"error: {first_line}\n")
    sys.stderr.flush()
    raise SystemExit(error.exit_code)
