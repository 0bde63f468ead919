"""What the commands print for a person."""
from __future__ import annotations

import errno
import os
import sys


def print_output(text: str) -> None:
    """Print `text` (and a newline) to stdout; a reader that stops early (`| head -1`) ends the output quietly.

    Once the reader is gone, stdout is pointed at /dev/null: the interpreter flushes stdout again at exit,
    and that flush would otherwise print a BrokenPipeError of its own. The command's exit status stays
    what it judged; nothing else of the output is wanted.
    """
    try:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except OSError as error:
        if error.errno != errno.EPIPE:
            raise
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())
        finally:
            os.close(devnull)
