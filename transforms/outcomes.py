"""How a step that runs on a worker ends the whole run with one line for a person and an exit status.

A runner re-raises a worker's exception as its own, with the original message somewhere inside its
text (and on Dataflow, only the text reaches the launcher). So each kind of ending is a message prefix
that the command (pipeline/cli.py) finds in the error's text; the line after it is what it prints.
"""
from __future__ import annotations

import re
from typing import Optional, Tuple

# (prefix, exit status): the design's exit codes
UNUSABLE = ("unusable input: ", 2)  # what the user gave cannot work (a --class_map key no class has)
FAILED = ("nothing was published: ", 1)  # the run failed (a staged file cut short); the output is unchanged
REFUSED = ("refused to publish: ", 3)  # the result would be empty, mostly rejected or destroy published data
_KINDS = (UNUSABLE, FAILED, REFUSED)


class RunEnded(Exception):
    """Ends the run with one line; raise one of the subclasses."""

    kind: Tuple[str, int]

    def __init__(self, detail: str):
        super().__init__(self.kind[0] + " ".join(detail.split()))


class UnusableInput(RunEnded):
    kind = UNUSABLE


class PublishFailed(RunEnded):
    kind = FAILED


class PublishRefused(RunEnded):
    kind = REFUSED


def ending_in(text: str) -> Optional[Tuple[str, int]]:
    """(the line to print, exit status) of the last run ending named in an error's text, or None."""
    found = None
    for prefix, status in _KINDS:
        index = text.rfind(prefix)
        if index >= 0 and (found is None or index > found[0]):
            found = (index, prefix, status)
    if found is None:
        return None
    index, prefix, status = found
    line = text[index:].splitlines()[0]
    line = re.split(r" \[while running|['\"]\)?$", line)[0].strip()  # the runner's step name; a repr's quote
    return line, status
