"""Which split an image belongs to and which shard holds it: pure functions of stable keys and the seed.

Python's hash() changes with every process, so sha256 is used: the same image gets the same split
and shard on every runner, in every re-run, and however much the dataset has grown since.
"""
from __future__ import annotations

import hashlib
import re
from typing import Tuple

Splits = Tuple[Tuple[str, float], ...]

_SPLIT_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class SplitError(ValueError):
    pass


def parse_splits(text: str) -> Splits:
    """`train=0.8,val=0.1,test=0.1` -> (("train", 0.8), ("val", 0.1), ("test", 0.1))."""
    splits = []
    for part in text.split(","):
        name, equals, fraction_text = part.strip().partition("=")
        if not equals:
            raise SplitError(f"split {part.strip()!r} is not NAME=FRACTION (e.g. train=0.8,val=0.2)")
        if not _SPLIT_NAME.match(name):
            raise SplitError(f"split name {name!r} must be lower-case letters, digits or _")
        try:
            fraction = float(fraction_text)
        except ValueError:
            raise SplitError(f"split {name} has fraction {fraction_text!r}, which is not a number") from None
        if not 0 <= fraction <= 1:
            raise SplitError(f"split {name} has fraction {fraction}, outside [0, 1]")
        if name in dict(splits):
            raise SplitError(f"split {name} is named twice")
        splits.append((name, fraction))
    total = sum(fraction for _, fraction in splits)
    if abs(total - 1.0) > 1e-6:
        raise SplitError(f"split fractions add up to {total:g}, not 1 ({text})")
    return tuple(splits)


def _unit_interval(*parts: object) -> float:
    digest = hashlib.sha256("\x1f".join(str(part) for part in parts).encode("utf-8")).digest()
    return (int.from_bytes(digest[:8], "big") >> 11) / 2**53  # 53 bits: exact in a double, always < 1


def assign_split(content_group: str, seed: int, splits: Splits) -> str:
    """The split of an image's content group: byte-identical images share one, whatever their names."""
    point = _unit_interval("split", seed, content_group)
    cumulative = 0.0
    for name, fraction in splits:
        cumulative += fraction
        if point < cumulative:
            return name
    return next(name for name, fraction in reversed(splits) if fraction > 0)


def assign_shard(key: str, seed: int, num_shards: int) -> int:
    return int(_unit_interval("shard", seed, key) * num_shards)

