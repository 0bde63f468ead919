"""What the JSON formats (COCO, LabelMe, CreateML) share: reading an untrusted file, and its numbers.

A JSON annotation file comes from anywhere; loading it must cost a rejection, never the run. The
standard `json` module resolves nothing external and has no entity expansion, so the hazards left
are bytes that are not text, text that is not JSON, and nesting deep enough to exhaust the stack.
"""
from __future__ import annotations

import json
from typing import Any, Optional, Union

from transforms.model import ITEM_ANNOTATION, Rejection

_BOM = b"\xef\xbb\xbf"


def load(source: str, data: bytes) -> Union[Any, Rejection]:
    """The document in `data`, or a `json_malformed` rejection of `source` (never an exception).

    UTF-8 with or without a byte-order mark, and UTF-16/32 (as `json.loads` detects them) are read;
    bytes that are not valid in their encoding are refused rather than smuggled through as lone
    surrogates. Deep nesting (`[[[[...`) is a RecursionError inside the decoder, refused like any
    other malformed file. A document is never a Rejection, so `isinstance(result, Rejection)` tells
    the two apart.
    """
    try:
        text = data.decode(json.detect_encoding(data))  # strict: no surrogates from bad bytes
        return json.loads(text)
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        detail = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
        return Rejection(source, "json_malformed", detail, ITEM_ANNOTATION)


def head_start(head: bytes) -> bytes:
    """The first significant byte of a file's head, after a UTF-8 byte-order mark and whitespace."""
    head = head.lstrip()
    if head.startswith(_BOM):
        head = head[len(_BOM):].lstrip()
    return head[:1]


def number(value: Any) -> Optional[float]:
    """A JSON number as a float; None for anything else, including integers beyond float range.

    NaN and infinities (which Python's decoder accepts) come back as they are: the box check in the
    writer rejects them as `box_not_finite`.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return float(value)
    except OverflowError:
        return None


def text(value: Any) -> Optional[str]:
    """`value` if it is a string that can be written as UTF-8; None otherwise.

    A JSON escape such as `"\\ud800"` decodes to a lone surrogate, which no UTF-8 writer accepts: such
    a name must be refused where it is read, not where a record or report is encoded.
    """
    if not isinstance(value, str):
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return value


def brief(value: Any) -> str:
    """`repr(value)` cut to 80 characters, for a rejection's one-line detail (repr escapes surrogates)."""
    shown = repr(value)
    return shown if len(shown) <= 80 else shown[:77] + "..."
