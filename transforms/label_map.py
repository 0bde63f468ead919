"""label_map.pbtxt: read, extend without renumbering, write.

Ids start at 1 (0 is the background class). A seed map (--label_map, an incremental run's published map)
keeps every id it has. `source_label_map` keeps the ids the annotations declare (COCO category ids, YOLO
index + 1, CVAT label order): the first source that numbers its classes gives its ids, every other class
gets the next free id in name order (`extend_label_map`, which is the whole rule for formats that number
nothing and for --class_ids sorted). The result depends only on the sets given, never on their order.
"""
from __future__ import annotations

import re
from collections import defaultdict
from typing import Callable, Collection, Dict, Iterable, List, Mapping, Optional, Tuple

# Protobuf text format, as much of it as label maps use: strings (either quote, C escapes),
# numbers, words, braces, colons and `#` comments outside strings.
_TOKEN = re.compile(
    r"""\s+|\#[^\n]*|(?P<string>'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*")|(?P<word>[\w.+-]+)|(?P<punct>[{}<>:;,\[\]])"""
)
_ESCAPE = re.compile(r"\\(x[0-9A-Fa-f]{1,2}|[0-7]{1,3}|.)", re.S)
_SIMPLE_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "a": "\a", "b": "\b", "f": "\f", "v": "\v"}


MAX_ID = 2 ** 31 - 1  # label map ids are int32 (StringIntLabelMapItem.id); a larger declared id numbers nothing


class LabelMapError(ValueError):
    pass


class ClassIdConflict(LabelMapError):
    """Two declarations give one class two ids (or, within one source, one id to two classes)."""


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


# (source index, origin: the file or setting that declares it, declared id, class name)
Declaration = Tuple[int, str, int, str]
# What the parse steps send the label map step beside the class names: (DECLARED, *Declaration), and
# (ZERO_USED, source index) for a source whose boxes use id 0.
DECLARED = "declared_class_id"
ZERO_USED = "class_id_zero_used"
RULE_SOURCE, RULE_SORTED = "source", "sorted"  # --class_ids


class LabelIds(dict):
    """{class name: id}, and how the ids were given: `rule` (--class_ids) and `shifted_by` (1 when a
    source's boxes use id 0 and its ids moved up by one), for summary.json's `class_ids`."""

    def __init__(self, ids: Mapping[str, int] = (), rule: str = RULE_SORTED, shifted_by: int = 0):
        super().__init__(ids)
        self.rule = rule
        self.shifted_by = shifted_by

    def __reduce__(self):
        return LabelIds, (dict(self), self.rule, self.shifted_by)


def _by_origin(declared: Iterable[Declaration], shifted: Collection[int]) -> Dict[Tuple[int, str], Dict[str, int]]:
    """Each origin's {name: id}: shifted by one for a source whose boxes use id 0, ids below 1 (an unused
    id 0) and above MAX_ID left out; a name declared twice takes its smaller id (two names a class map
    made one); an id one origin gives two names numbers neither."""
    pairs = defaultdict(set)
    for source, origin, class_id, name in declared:
        class_id += 1 if source in shifted else 0
        if 1 <= class_id <= MAX_ID:
            pairs[(source, origin)].add((class_id, name))
    numbered = {}
    for key, found in pairs.items():
        names_of = defaultdict(set)
        for class_id, name in found:
            names_of[class_id].add(name)
        ids: Dict[str, int] = {}
        for class_id, name in sorted(found):
            if len(names_of[class_id]) == 1:
                ids.setdefault(name, class_id)
        numbered[key] = ids
    return numbered


def source_label_map(
    seed: Mapping[str, int],
    names: Iterable[str],
    declared: Iterable[Declaration] = (),
    zero_used: Iterable[int] = (),
    merged: Collection[str] = (),
    describe: Optional[Callable[[int], str]] = None,
) -> Tuple[Dict[str, int], Tuple[int, ...]]:
    """The label map keeping the sources' own ids, and the sources whose ids were shifted by one.

    `names`: the classes the boxes use. `declared`: every (source, origin, id, name) the sources number
    their classes with, after --class_map renames. `zero_used`: the sources whose boxes use id 0: their
    ids shift by one (0 is the background); elsewhere a declared id 0 is left out. `merged`: the class
    map's targets.

    The seed's ids never move. A class declared with different ids by two origins (two sources, or two
    files of one) ends the run (ClassIdConflict), unless the seed has it, or the class map made it of
    several names: then the smallest id of the first source declaring it wins. The first source that
    declares ids gives its classes those ids (two classes with one id in it end the run; one whose id the
    seed took gets a free one); every other class, used or declared, gets the next free id above the
    largest, in name order.
    """
    describe = describe or (lambda source: f"source {source + 1}")
    declared = list(declared)
    shifted = sorted({source for source, *_ in declared} & set(zero_used))
    by_origin = _by_origin(declared, set(shifted))
    ids = dict(seed)
    # name -> [(source, origin, id)], in source then origin order
    claims: Dict[str, List[Tuple[int, str, int]]] = defaultdict(list)
    for (source, origin), numbered in sorted(by_origin.items()):
        for name, class_id in numbered.items():
            claims[name].append((source, origin, class_id))

    def where(claim: Tuple[int, str, int]) -> str:
        source, origin, _ = claim
        named = describe(source)
        return named if not origin or named == origin or named.endswith(":" + origin) else f"{named} ({origin})"

    resolved: Dict[str, Tuple[int, int]] = {}  # name -> (first source declaring it, its id)
    for name in sorted(claims):
        if name in ids:
            continue
        found = claims[name]
        first_source = found[0][0]
        differing = next((claim for claim in found if claim[2] != found[0][2]), None)
        if differing is not None and name not in merged:
            raise ClassIdConflict(
                f"class {name!r} has id {found[0][2]} in {where(found[0])} and id {differing[2]} in "
                f"{where(differing)}; rename one with --class_map, give the ids with --label_map, or number "
                "the classes by name with --class_ids sorted"
            )
        resolved[name] = (first_source, min(claim[2] for claim in found if claim[0] == first_source))

    if resolved:
        first = min(source for source, _ in resolved.values())
        holders: Dict[int, str] = {}
        for name in sorted(resolved, key=lambda name: (resolved[name][1], name)):
            source, class_id = resolved[name]
            if source != first:
                continue
            if class_id in holders:
                other = holders[class_id]
                where_other = next(claim for claim in claims[other] if claim[0] == first and claim[2] == class_id)
                where_this = next(claim for claim in claims[name] if claim[0] == first and claim[2] == class_id)
                raise ClassIdConflict(
                    f"id {class_id} is class {other!r} in {where(where_other)} and {name!r} in {where(where_this)}; "
                    "rename one with --class_map, give the ids with --label_map, or number the classes by name "
                    "with --class_ids sorted"
                )
            holders[class_id] = name
        taken = set(ids.values())
        for class_id, name in sorted(holders.items()):
            if class_id not in taken:
                ids[name] = class_id
    declared_names = {name for source, _, class_id, name in declared
                      if 1 <= class_id + (1 if source in shifted else 0) <= MAX_ID}
    return extend_label_map(ids, set(names) | declared_names), tuple(shifted)


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
