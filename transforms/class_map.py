"""--class_map: one vocabulary across sources (`Person`, `person`, `pedestrian` -> `person`; `null` drops).

A key that names no class of the annotations (`racoon` for `raccoon`) would map nothing and change no
box, silently: the run ends instead, naming the key and the closest class. The classes are known only
once every annotation is parsed, so the parse steps send the label map step the names as the annotations
spell them (before the map) and the map's keys, beside the class names; it checks them all at once.
A class the annotations declare without any box using it (a COCO category, a --classes name) is a class
of the annotations too.

Declared class ids (COCO category_id, YOLO index + 1, CVAT label order) follow the rename: a renamed
class keeps its id under the new name, a class mapped to `null` is not in the label map, and when the map
makes one class of several with different ids, the smallest id (of the first source declaring them) wins
(transforms/label_map.py `source_label_map`).
"""
from __future__ import annotations

import dataclasses
import difflib
from typing import Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple

from transforms.model import ImageRecord
from transforms.outcomes import UnusableInput

ClassMap = Mapping[str, Optional[str]]

# What the parse steps send beside the class names (plain strings) to the label map step.
MAP_KEY = "class_map_key"  # (MAP_KEY, a key of --class_map)
SOURCE_CLASS = "source_class"  # (SOURCE_CLASS, a class name as an annotation spells it, before the map)
MAX_NAMED = 10  # unmatched keys named in the message


def apply_class_map(record: ImageRecord, class_map: ClassMap) -> Tuple[ImageRecord, int]:
    """The record with its box labels renamed, and how many boxes a `null` target dropped.

    Names the map does not mention are kept as they are.
    """
    if not class_map:
        return record, 0
    boxes = []
    for box in record.boxes:
        if box.label not in class_map:
            boxes.append(box)
        elif class_map[box.label] is not None:
            boxes.append(dataclasses.replace(box, label=class_map[box.label]))
    return dataclasses.replace(record, boxes=tuple(boxes)), len(record.boxes) - len(boxes)


def class_map_notes(source_classes: Iterable[str], class_map: ClassMap) -> Iterator[Tuple[str, str]]:
    """What the label map step needs to check `class_map` against the classes one parse task saw; nothing
    without a class map."""
    if not class_map:
        return
    for key in sorted(class_map):
        yield MAP_KEY, key
    for name in sorted(set(source_classes)):
        yield SOURCE_CLASS, name


def class_names_checked(elements: Iterable) -> List[str]:
    """The class names among the label map step's elements, after checking the class map notes among them.

    Raises UnusableInput naming every class map key that no annotation's class matches. Other notes
    (the declared class ids, transforms/label_map.py) are not class names and are left out.
    """
    names, keys, source_classes = [], set(), set()
    for element in elements:
        if isinstance(element, str):
            names.append(element)
        elif element[0] == MAP_KEY:
            keys.add(element[1])
        elif element[0] == SOURCE_CLASS:
            source_classes.add(element[1])
    problem = unmatched_keys_message(keys, source_classes)
    if problem:
        raise UnusableInput(problem)
    return names


def closest_class(key: str, classes: Sequence[str]) -> Optional[str]:
    """The class most like `key` (difflib's ratio, case aside when case alone differs), or None."""
    found = difflib.get_close_matches(key, classes, n=1)
    if found:
        return found[0]
    by_lower = {}
    for name in sorted(classes):
        by_lower.setdefault(name.lower(), name)
    found = difflib.get_close_matches(key.lower(), list(by_lower), n=1)
    return by_lower[found[0]] if found else None


def unmatched_keys_message(keys: Iterable[str], source_classes: Iterable[str]) -> Optional[str]:
    """One line naming the class map keys that match none of `source_classes`, each with the closest class."""
    classes = sorted(set(source_classes))
    unmatched = sorted(set(keys) - set(classes))
    if not unmatched:
        return None

    def named(key: str) -> Tuple[str, str]:
        suggestion = closest_class(key, classes)
        return repr(key), f" (did you mean {suggestion!r}?)" if suggestion else ""

    if len(unmatched) == 1:
        key, hint = named(unmatched[0])
        return f"--class_map: {key} matches no class in the annotations{hint}; fix or remove it"
    shown = [key + hint for key, hint in map(named, unmatched[:MAX_NAMED])]
    more = f" and {len(unmatched) - MAX_NAMED} more" if len(unmatched) > MAX_NAMED else ""
    listed = ", ".join(shown[:-1]) + (f", {shown[-1]}{more}" if more else f" and {shown[-1]}")
    return f"--class_map: {listed} match no class in the annotations; fix or remove them"
