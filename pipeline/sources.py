"""Annotation sources: which files, in which format, with which images and class names.

`--annotations` may be given more than once (formats may differ) to merge several datasets into one;
`--images` is then given once for all or once per source. A source may name its format as a prefix,
`coco:annotations/instances.json`; otherwise --format applies, or the format is detected by sniffing a
few files with every format's `sniff`.
"""
from __future__ import annotations

import dataclasses
import itertools
import os
import posixpath
import re
from typing import Any, List, Optional, Sequence, Tuple

import yaml

from pipeline.errors import UsageError
from transforms import storage
from transforms.formats import DEFAULT_MAX_ANNOTATION_BYTES, FORMATS, SNIFF_BYTES, AnnotationFormat, ParseContext
from transforms.read import read_file

_GLOB = re.compile(r"[*?\[]")
_SNIFF_FILES = 5  # files per format looked at when detecting a folder's format
_CLASS_FILES = ("data.yaml", "dataset.yaml", "classes.txt", "obj.names", "classes.names")


@dataclasses.dataclass(frozen=True)
class Source:
    format: AnnotationFormat
    annotations: str
    patterns: Tuple[str, ...]
    images: str
    context: ParseContext


def absolute(path: str) -> str:
    return path if not storage.is_local(path) else os.path.abspath(os.path.expanduser(path))


def _matches(patterns: Sequence[str], limit: Optional[int] = None) -> List[str]:
    """The first `limit` files each pattern matches, sorted; the listing stops there (a big folder is not read whole)."""
    found = set()
    try:
        for pattern in patterns:
            found.update(path for path, _ in itertools.islice(storage.matching_files([pattern]), limit))
    except Exception as error:
        raise UsageError(f"cannot list {', '.join(patterns)}: {error}") from None
    return sorted(found)


def is_folder(path: str) -> bool:
    if storage.is_local(path):
        return os.path.isdir(path)
    return bool(_matches([storage.literal(path.rstrip("/")) + "/**"], limit=1))


def _is_glob(path: str) -> bool:
    """A path with glob characters that names no file or folder as written: an --annotations glob.
    One that does (a folder called `data[1]`) is taken literally."""
    return bool(_GLOB.search(path)) and not storage.exists(path) and not is_folder(path)


def _head(path: str) -> bytes:
    try:
        return read_file(path, SNIFF_BYTES)
    except Exception:  # unreadable or not a regular file: it tells nothing about the format
        return b""


def _patterns(path: str, fmt: AnnotationFormat) -> Tuple[str, ...]:
    """The patterns of an --annotations path: a glob as given, a file or folder literally."""
    if _is_glob(path):
        return (path,)
    if not is_folder(path):
        return (storage.literal(path),)
    return tuple(storage.literal(path.rstrip("/")) + "/" + pattern for pattern in fmt.folder_patterns)


def _detect(path: str) -> AnnotationFormat:
    candidates = []
    for fmt in FORMATS.values():
        files = _matches(_patterns(path, fmt), limit=_SNIFF_FILES)
        if any(fmt.sniff(file, _head(file)) for file in files[:_SNIFF_FILES]):
            candidates.append(fmt)
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise UsageError(f"cannot tell the annotation format of {path}; pass --format ({', '.join(FORMATS)})")
    raise UsageError(f"{path} could be any of {', '.join(fmt.name for fmt in candidates)}; pass --format to choose")


def load_classes(path: str) -> Tuple[str, ...]:
    """Class names by index from a names file (one per line) or a data.yaml (`names` list or dict)."""
    try:
        text = read_file(path).decode("utf-8-sig")
    except Exception as error:
        raise UsageError(f"cannot read --classes {path}: {error}") from None
    if not path.lower().endswith((".yaml", ".yml")):
        names = tuple(line.strip() for line in text.splitlines() if line.strip())
    else:
        try:
            names = (yaml.safe_load(text) or {}).get("names")
        except (yaml.YAMLError, AttributeError):
            raise UsageError(f"--classes {path} is not a YAML mapping with `names`") from None
        if isinstance(names, dict):
            if sorted(names) != list(range(len(names))):
                raise UsageError(f"--classes {path}: `names` keys must be 0..{len(names) - 1}")
            names = [names[index] for index in range(len(names))]
        if not isinstance(names, list):
            raise UsageError(f"--classes {path} has no `names` list or dict")
        names = tuple(str(name) for name in names)
    if not names:
        raise UsageError(f"--classes {path} names no class")
    return names


def _find_classes(annotations: str) -> Optional[str]:
    folder = annotations if is_folder(annotations) else posixpath.dirname(annotations)
    for candidate_folder in (folder, posixpath.dirname(folder.rstrip("/"))):
        for name in _CLASS_FILES:
            candidate = candidate_folder.rstrip("/") + "/" + name
            if storage.exists(candidate):
                return candidate
    return None


def _split_format_prefix(spec: str) -> Tuple[Optional[str], str]:
    prefix, colon, rest = spec.partition(":")
    if colon and prefix in FORMATS:
        return prefix, rest
    return None, spec


def resolve_sources(
    annotations: Sequence[str], images: Sequence[str], format_name: Optional[str], classes: Optional[str],
    max_annotation_bytes: int = DEFAULT_MAX_ANNOTATION_BYTES,
) -> Tuple[Source, ...]:
    if len(images) not in (1, len(annotations)):
        raise UsageError(f"give --images once, or once per --annotations ({len(annotations)}), not {len(images)} times")
    if format_name is not None and format_name not in FORMATS:
        raise UsageError(f"unknown --format {format_name!r}; choose one of {', '.join(FORMATS)}")
    sources = []
    for index, spec in enumerate(annotations):
        prefix, path = _split_format_prefix(str(spec))
        path = absolute(path).rstrip("/")
        images_root = absolute(str(images[index if len(images) > 1 else 0])).rstrip("/")
        if not _matches([path if _is_glob(path) else storage.literal(path)], limit=1) and not is_folder(path):
            raise UsageError(f"--annotations {path}: no such file, folder or matching files")
        if not is_folder(images_root):
            raise UsageError(f"--images {images_root}: no such folder (or it is empty)")
        fmt = FORMATS[prefix or format_name] if (prefix or format_name) else _detect(path)
        patterns = _patterns(path, fmt)
        if not fmt.unlabeled_images_are_negatives and not _matches(patterns, limit=1):
            looked_for = ", ".join(fmt.folder_patterns)
            raise UsageError(f"no {fmt.name} annotation files at {path} (looked for {looked_for})")
        class_names: Tuple[str, ...] = ()
        if fmt.needs_classes:
            class_file = absolute(classes) if classes else _find_classes(path)
            if class_file is None:
                raise UsageError(
                    f"{fmt.name} labels store class indices: pass --classes classes.txt or data.yaml "
                    f"(none found beside {path})"
                )
            class_names = load_classes(class_file)
        root = path if is_folder(path) else posixpath.dirname(path)
        context = ParseContext(classes=class_names, annotations_root=root, max_annotation_bytes=max_annotation_bytes)
        sources.append(Source(fmt, path, patterns, images_root, context))
    return tuple(sources)


def as_list(value: Any) -> List[str]:
    if value is None:
        return []
    return [str(item) for item in value] if isinstance(value, (list, tuple)) else [str(value)]

