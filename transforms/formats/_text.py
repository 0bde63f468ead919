"""Text as annotation files store it: lines of line-based formats, numbers and flags."""
from __future__ import annotations

import math
import re
from typing import Iterator, Optional, Tuple

from transforms.model import ITEM_BOX, Rejection

MAX_LINE_BYTES = 1 << 20  # a longer line of a line-based format (YOLO, CSV) is rejected, never decoded
_LINE_END = re.compile(rb"\r\n?|\n")  # the line ends of bytes.splitlines and of the csv module
_BOM = b"\xef\xbb\xbf"


def lines(data: bytes) -> Iterator[Tuple[int, int, Optional[bytes]]]:
    """(number from 1, offset in `data`, bytes with the line's ending) of each line of `data`.

    The bytes are None for a line longer than MAX_LINE_BYTES, which is never copied: one line of a
    huge file costs what that line's bytes cost, not the file's (no decoded copy of the whole text, no
    list of lines). A UTF-8 byte order mark before the first line is not part of it (Excel writes one).
    """
    start = len(_BOM) if data.startswith(_BOM) else 0
    number = 0
    for number, end in enumerate(_LINE_END.finditer(data, start), start=1):
        yield number, start, data[start:end.end()] if end.start() - start <= MAX_LINE_BYTES else None
        start = end.end()
    if start < len(data):
        yield number + 1, start, data[start:] if len(data) - start <= MAX_LINE_BYTES else None


LINE_TOO_LONG = "annotation_line_too_long"


def line_too_long_detail(number: int) -> str:
    return f"line {number} is longer than {MAX_LINE_BYTES:,} bytes"


def line_too_long(source: str, number: int) -> Rejection:
    """The rejection of a line `lines` gave as None: a line holds one box in the formats that have lines."""
    return Rejection(source, LINE_TOO_LONG, line_too_long_detail(number), ITEM_BOX)


def number(value: Optional[str], name: str) -> float:
    """`value` as a float; ValueError naming `name` when it is missing or not a number."""
    if value is None or value.strip() == "":
        raise ValueError(f"{name} is missing")
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"{name} {value.strip()[:50]!r} is not a number") from None


def positive_int(value: Optional[str]) -> Optional[int]:
    """A whole positive number such as an image size ("640" or "640.0"); None for anything else."""
    try:
        parsed = float(value) if value else math.nan
    except ValueError:
        return None
    return int(parsed) if math.isfinite(parsed) and parsed > 0 and parsed.is_integer() else None


def flag(value: Optional[str]) -> Optional[bool]:
    """"1", "true", "yes" -> True; other text -> False; missing or blank -> None (unknown)."""
    if value is None or not value.strip():
        return None
    return value.strip().lower() in ("1", "true", "yes")
