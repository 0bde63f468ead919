"""Numbers and flags written as text, as XML and CSV formats store them."""
from __future__ import annotations

import math
from typing import Optional


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
