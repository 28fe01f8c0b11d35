"""One way every command-line tool ends on bad input: ``error: <one line>`` on stderr, exit 2,
no traceback. ``CSN_DEBUG=1`` shows the traceback of an unexpected error."""
from __future__ import annotations

import os
import sys
from typing import Callable

MAX_ERROR_CHARS = 300


def one_line(e: BaseException) -> str:
    """The error's first line, cut to MAX_ERROR_CHARS (messages quote little of the input)."""
    text = str(e).strip().splitlines()
    line = text[0] if text else type(e).__name__
    return line if len(line) <= MAX_ERROR_CHARS else line[: MAX_ERROR_CHARS - 3] + "..."


def run_cli(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """``main(argv)``'s exit code; an exception becomes one ``error:`` line and exit 2
    (SystemExit from argparse and KeyboardInterrupt pass through)."""
    try:
        return main(argv)
    except (ValueError, OSError, LookupError, TypeError, RecursionError, MemoryError) as e:
        # bad input: SpecError and the other input errors are ValueErrors
        print(f"error: {one_line(e)}", file=sys.stderr)
    except Exception as e:  # noqa: BLE001 - still one line; the traceback on request
        if os.environ.get("CSN_DEBUG"):
            raise
        print(f"error: {type(e).__name__}: {one_line(e)} (CSN_DEBUG=1 shows where)", file=sys.stderr)
    return 2
