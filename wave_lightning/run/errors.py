"""One-line errors for mistakes in what a user gave (files, keys, values); tracebacks on demand.

Every command prints `error: ...` and exits with status 1 for such a mistake; with the
environment variable WAVE_LIGHTNING_DEBUG=1 the exception propagates with its traceback.
"""

import os
import sys
from typing import NoReturn

DEBUG_ENV = "WAVE_LIGHTNING_DEBUG"


class UserError(Exception):
    """A mistake in what the user gave (a file, a key, a value, a folder) or data that went bad:
    every command reports it as one `error:` line, never a traceback."""


def exit_with(error: BaseException) -> NoReturn:
    """Exit with `error: <message>`, or re-raise `error` when debugging is asked for."""
    if os.environ.get(DEBUG_ENV, "") not in ("", "0"):
        raise error
    sys.exit(f"error: {error}")
