"""label_map.pbtxt: read, extend without renumbering, write.

Ids are 1..N (0 is the background class). A seed map keeps every id it has; classes it does not
know get the next free ids in name order, so the result depends only on the set of names.
"""
from __future__ import annotations

import re
from typing import Dict, Iterable, Mapping

_ITEM = re.compile(r"item\s*\{(?P<body>[^{}]*)\}", re.S)
_FIELD = re.compile(r"""(?P<key>\w+)\s*:\s*(?:(?P<number>-?\d+)|'(?P<single>(?:[^'\\]|\\.)*)'|"(?P<double>(?:[^"\\]|\\.)*)")""")


class LabelMapError(ValueError):
    pass


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def parse_label_map(text: str) -> Dict[str, int]:
    """Class name -> id from a label_map.pbtxt (the OD API's StringIntLabelMap text format)."""
    ids: Dict[str, int] = {}
    without_comments = re.sub(r"#[^\n]*", "", text)
    for item in _ITEM.finditer(without_comments):
        fields = {}
        for field in _FIELD.finditer(item.group("body")):
            value = field.group("number")
            if value is None:
                value = _unescape(field.group("single") if field.group("single") is not None else field.group("double"))
            fields[field.group("key")] = value
        if "name" not in fields or "id" not in fields:
            raise LabelMapError(f"label map item without name or id: {item.group(0).strip()!r}")
        name, class_id = fields["name"], int(fields["id"])
        if class_id < 1:
            raise LabelMapError(f"label map id {class_id} for {name!r}: ids start at 1 (0 is background)")
        if name in ids and ids[name] != class_id:
            raise LabelMapError(f"label map names {name!r} twice, with ids {ids[name]} and {class_id}")
        if class_id in ids.values() and ids.get(name) != class_id:
            raise LabelMapError(f"label map gives id {class_id} to two classes")
        ids[name] = class_id
    if not ids and without_comments.strip():
        raise LabelMapError("no `item { id: N name: '...' }` entries found")
    return ids


def extend_label_map(seed: Mapping[str, int], names: Iterable[str]) -> Dict[str, int]:
    """`seed` plus every name it lacks, numbered from its highest id on, in name order."""
    ids = dict(seed)
    next_id = max(ids.values(), default=0) + 1
    for name in sorted(set(names) - set(ids)):
        ids[name] = next_id
        next_id += 1
    return ids


def format_label_map(ids: Mapping[str, int]) -> str:
    def quoted(name: str) -> str:
        return "'" + name.replace("\\", "\\\\").replace("'", "\\'") + "'"

    return "".join(
        f"item {{\n  id: {class_id}\n  name: {quoted(name)}\n}}\n"
        for name, class_id in sorted(ids.items(), key=lambda item: item[1])
    )
