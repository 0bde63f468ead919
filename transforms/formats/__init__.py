"""Annotation formats: one module each, behind one small interface.

A format turns the bytes of one annotation file into image records (and rejections for what it cannot
use). Parsers are pure functions; the checks every format needs (safe image paths, a parser that
fails on a hostile file) live here once, in `parse_annotation_file`.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Dict, Iterable, Iterator, Optional, Tuple, Union

from transforms import paths
from transforms.source_splits import canonical_split, split_from_path
from transforms.model import ITEM_ANNOTATION, Ignored, ImageRecord, Rejection

Parsed = Union[ImageRecord, Rejection, Ignored]


@dataclasses.dataclass(frozen=True)
class ParseContext:
    """What a parser may need besides the file itself."""

    classes: Tuple[str, ...] = ()  # class names by index, for formats that store indices (YOLO)
    annotations_root: str = ""  # the --annotations folder, for formats whose file paths mean something


NO_CONTEXT = ParseContext()


@dataclasses.dataclass(frozen=True)
class AnnotationFormat:
    name: str
    summary: str  # one line for `convert --help`
    example: str  # a command line a user can adapt
    folder_patterns: Tuple[str, ...]  # which files of an --annotations folder are annotations
    # (source path, file bytes, context) -> records and rejections; never raises on bad bytes
    parse: Callable[[str, bytes, ParseContext], Iterable[Parsed]]
    # (path, the file's first SNIFF_BYTES bytes) -> does this file look like this format?
    sniff: Callable[[str, bytes], bool]
    images_by_stem: bool = False  # records name images without extension (YOLO): join by stem
    unlabeled_images_are_negatives: bool = False  # an image without annotation file is a negative, not an orphan
    needs_classes: bool = False  # class names come from --classes
    # (annotation file bytes) -> the image the file embeds (LabelMe's imageData), used when no file matches
    embedded_image: Optional[Callable[[bytes], Optional[bytes]]] = None


SNIFF_BYTES = 4096


def parse_annotation_file(
    fmt: AnnotationFormat, source: str, data: bytes, context: ParseContext = NO_CONTEXT
) -> Iterator[Parsed]:
    """Records whose image paths are safe to open, and a rejection for everything else."""
    try:
        parsed = list(fmt.parse(source, data, context))
    except Exception as error:  # a parser bug must cost one file, not the run
        yield Rejection(source, "annotation_unreadable", f"{type(error).__name__}: {error}", ITEM_ANNOTATION)
        return
    for item in parsed:
        if not isinstance(item, ImageRecord):
            yield item
            continue
        key = paths.image_key(item.key)
        if key is None:
            yield Rejection(
                source, "path_outside_images", f"image path {item.key!r} is not inside --images", boxes=len(item.boxes)
            )
            continue
        relative_source = (
            context.annotations_root and paths.relative_to(context.annotations_root, source)
        ) or source.rsplit("/", 1)[-1]
        source_split = (
            canonical_split(item.source_split) if item.source_split else None
        ) or split_from_path(key) or split_from_path(relative_source)
        yield dataclasses.replace(item, key=key, source_id=item.source_id or key, source_split=source_split)


def _registry() -> Dict[str, AnnotationFormat]:
    from transforms.formats import coco, createml, csv_format, cvat, labelme, voc, yolo

    formats = (voc, coco, yolo, csv_format, cvat, labelme, createml)
    return {module.FORMAT.name: module.FORMAT for module in formats}


FORMATS = _registry()
