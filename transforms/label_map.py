"""label_map.pbtxt: read, extend without renumbering, write.

Ids are 1..N (0 is the background class). A seed map keeps every id it has; classes it does not
know get the next free ids in name order, so the result depends only on the set of names.
"""
from __future__ import annotations

import re
from typing import Dict, Iterable, Mapping

# Protobuf text format, as much of it as label maps use: strings (either quote, C escapes),
# numbers, words, braces, colons and `#` comments outside strings.
_TOKEN = re.compile(
    r"""\s+|\#[^\n]*|(?P<string>'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*")|(?P<word>[\w.+-]+)|(?P<punct>[{}<>:;,\[\]])"""
)
_ESCAPE = re.compile(r"\\(x[0-9A-Fa-f]{1,2}|[0-7]{1,3}|.)", re.S)
_SIMPLE_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "a": "\a", "b": "\b", "f": "\f", "v": "\v"}


class LabelMapError(ValueError):
    pass


def _unescape(literal: str) -> str:
    """A quoted text-format string's value: C escapes decoded, the bytes read as UTF-8."""

    def byte_or_char(match: re.Match) -> str:
        escape = match.group(1)
        if escape[0] == "x":
            return chr(int(escape[1:], 16))
        if escape[0] in "01234567":
            return chr(int(escape, 8))
        return _SIMPLE_ESCAPES.get(escape, escape)

    # Octal and hex escapes are bytes; latin-1 maps them 1:1 so UTF-8 sequences decode as a whole.
    raw = _ESCAPE.sub(byte_or_char, literal[1:-1].encode("utf-8").decode("latin-1"))
    return raw.encode("latin-1").decode("utf-8", errors="replace")


def _tokens(text: str):
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise LabelMapError(f"unexpected {text[position:position + 20]!r}")
        position = match.end()
        if match.group("string") is not None:
            yield "string", _unescape(match.group("string"))
        elif match.group("word") is not None:
            yield "word", match.group("word")
        elif match.group("punct") is not None:
            yield "punct", match.group("punct")


def _items(text: str):
    """The top-level fields of every `item { ... }`, as dicts; nested blocks (keypoints, ...) skipped."""
    tokens = list(_tokens(text))
    index, depth, fields, key = 0, 0, None, None
    while index < len(tokens):
        kind, value = tokens[index]
        index += 1
        if kind == "punct" and value in "{<":
            depth += 1
            key = None  # a nested block's name is no field of the item
            if depth == 1:
                fields = {}
        elif kind == "punct" and value in "}>":
            depth -= 1
            if depth < 0:
                raise LabelMapError("unbalanced braces")
            if depth == 0:
                yield fields
        elif depth == 0 and kind == "word" and value != "item":
            raise LabelMapError(f"expected `item {{ id: N name: '...' }}` entries, found {value!r}")
        elif depth == 1 and kind == "word" and key is None:
            key = value
        elif depth == 1 and key is not None and not (kind == "punct" and value in ":"):
            if kind != "punct":
                fields[key] = value
            key = None
    if depth:
        raise LabelMapError("an item is not closed")


def parse_label_map(text: str) -> Dict[str, int]:
    """Class name -> id from a label_map.pbtxt (the OD API's StringIntLabelMap text format)."""
    ids: Dict[str, int] = {}
    for fields in _items(text):
        if "name" not in fields or "id" not in fields:
            raise LabelMapError(f"label map item without name or id: {fields}")
        name = fields["name"]
        try:
            class_id = int(fields["id"])
        except ValueError:
            raise LabelMapError(f"label map id {fields['id']!r} for {name!r} is not a whole number") from None
        if class_id < 1:
            raise LabelMapError(f"label map id {class_id} for {name!r}: ids start at 1 (0 is background)")
        if name in ids and ids[name] != class_id:
            raise LabelMapError(f"label map names {name!r} twice, with ids {ids[name]} and {class_id}")
        if class_id in ids.values() and ids.get(name) != class_id:
            raise LabelMapError(f"label map gives id {class_id} to two classes")
        ids[name] = class_id
    return ids


def extend_label_map(seed: Mapping[str, int], names: Iterable[str]) -> Dict[str, int]:
    """`seed` plus every name it lacks, numbered from its highest id on, in name order."""
    ids = dict(seed)
    next_id = max(ids.values(), default=0) + 1
    for name in sorted(set(names) - set(ids)):
        ids[name] = next_id
        next_id += 1
    return ids


def _quoted(name: str) -> str:
    """A text-format string literal that protobuf's own parser reads back as `name`."""
    out = []
    for char in name:
        if char in "\\'\"":
            out.append("\\" + char)
        elif char == "\n":
            out.append("\\n")
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\{ord(char):03o}")
        else:
            out.append(char)
    return "'" + "".join(out) + "'"


def format_label_map(ids: Mapping[str, int]) -> str:
    return "".join(
        f"item {{\n  id: {class_id}\n  name: {_quoted(name)}\n}}\n"
        for name, class_id in sorted(ids.items(), key=lambda item: item[1])
    )
