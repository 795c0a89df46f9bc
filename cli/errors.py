"""Errors a user can cause end as one paragraph and an exit code, never as a traceback."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from temporalio.service import RPCError


class UserError(Exception):
    """Something the user can fix; `str(err)` says what and how."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def run_cli(main: Callable[[], int | None]) -> None:
    """Run a command and leave with its exit code.

    `os._exit` after flushing: at interpreter exit the Temporal client's Rust threads can abort the
    process (temporalio/sdk-python issue 300), turning a success into exit code -6.
    """
    try:
        code = main() or 0
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        code = err.exit_code
    except RPCError as err:
        print(
            f"error: the Temporal server refused the request: {err.message}. Check TEMPORAL_NAMESPACE "
            "and the server's health (the Temporal UI shows both).",
            file=sys.stderr,
        )
        code = 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = 130
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
