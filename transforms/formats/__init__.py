"""Annotation formats: one module each, behind one small interface.

A format turns the bytes of one annotation file into image records (and rejections for what it cannot
use). Parsers are pure functions; the checks every format needs (safe image paths, a parser that
fails on a hostile file) live here once, in `parse_annotation_file`.
"""
from __future__ import annotations

import dataclasses
from typing import BinaryIO, Callable, Dict, Iterable, Iterator, Mapping, Optional, Tuple, Union

from transforms import paths
from transforms.source_splits import canonical_split, split_from_path
from transforms.model import ITEM_ANNOTATION, Ignored, ImageRecord, Rejection, box_rejections

Parsed = Union[ImageRecord, Rejection, Ignored]
DEFAULT_MAX_ANNOTATION_BYTES = 256 * 1024 * 1024  # a file above --max_annotation_bytes is rejected unread


@dataclasses.dataclass(frozen=True)
class ParseContext:
    """What a parser may need besides the file itself."""

    classes: Tuple[str, ...] = ()  # class names by index, for formats that store indices (YOLO)
    annotations_root: str = ""  # the --annotations folder, for formats whose file paths mean something
    max_annotation_bytes: int = DEFAULT_MAX_ANNOTATION_BYTES  # --max_annotation_bytes
    # image key -> split, where the source lists its splits apart from the annotations (VOC ImageSets/Main)
    image_splits: Optional[Mapping[str, str]] = None


NO_CONTEXT = ParseContext()


@dataclasses.dataclass(frozen=True)
class ClassNumbering:
    """The class ids one annotation file declares (COCO's categories, CVAT's labels in <meta> order), or a
    source's --classes (YOLO); the label map keeps them (transforms/label_map.py `source_label_map`).

    `ids` are (declared id, name) pairs as the source gives them, used by a box or not; `zero_used`: a box
    uses id 0 (a source numbering from 0), so the label map shifts the source's ids by one.
    """

    ids: Tuple[Tuple[int, str], ...]
    zero_used: bool = False


def context_numbering(fmt: "AnnotationFormat", context: ParseContext) -> Optional[ClassNumbering]:
    """A format whose boxes store class indices into --classes (YOLO) numbers class k as k + 1."""
    if not fmt.needs_classes or not context.classes:
        return None
    return ClassNumbering(tuple((index + 1, name) for index, name in enumerate(context.classes)))


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
    # (source path, open_stream, context, part, parts) -> the records of part `part` of `parts` (0-based),
    # with the rejections and Ignored counts that belong to that part; file-level rejections come from
    # part 0 only. `open_stream()` opens the file as a fresh binary stream at each call. For files too
    # big to hold in memory (COCO): each part streams the whole file and keeps its share, in parallel.
    parse_part: Optional[Callable[[str, Callable[[], BinaryIO], ParseContext, int, int], Iterable[Parsed]]] = None
    # Formats whose files number their classes (COCO, CVAT): `parse` and `parse_part` with a ClassNumbering
    # among the items (a part's numbering: the file's declarations from part 0, `zero_used` from every part)
    parse_numbered: Optional[Callable[[str, bytes, ParseContext], Iterable]] = None
    parse_part_numbered: Optional[Callable[[str, Callable[[], BinaryIO], ParseContext, int, int], Iterable]] = None


SNIFF_BYTES = 4096


def parse_annotation_file(
    fmt: AnnotationFormat, source: str, data: bytes, context: ParseContext = NO_CONTEXT, numbered: bool = False
) -> Iterator[Parsed]:
    """Records whose image paths are safe to open, and a rejection for everything else; with `numbered`, the
    ClassNumbering of a format that numbers its classes too."""
    oversized = too_large(source, len(data), context)
    if oversized is not None:
        yield oversized
        return
    parse = fmt.parse_numbered if numbered and fmt.parse_numbered else fmt.parse
    try:
        parsed = list(parse(source, data, context))
    except Exception as error:  # a parser bug must cost one file, not the run
        yield _unreadable(source, error)
        return
    for item in parsed:
        yield from _checked(source, item, context)


def too_large(source: str, size: int, context: ParseContext = NO_CONTEXT) -> Optional[Rejection]:
    """The rejection of an annotation file of `size` bytes when that is over --max_annotation_bytes, else None.

    Checked on the size the listing gave, before the file is read; a parser's memory grows with what it
    reads (a DOM, a decoded copy), so a whole-file parse is bounded by this. The parts of a file parsed
    in parts (COCO over transforms.beam.read.PART_BYTES) are exempt: each streams the file and keeps only its share.
    """
    limit = context.max_annotation_bytes
    if size <= limit:
        return None
    detail = f"{size:,} bytes, more than --max_annotation_bytes {limit:,}"
    return Rejection(source, "annotation_too_large", detail, ITEM_ANNOTATION)


def parse_annotation_part(
    fmt: AnnotationFormat,
    source: str,
    open_stream: Callable[[], BinaryIO],
    context: ParseContext = NO_CONTEXT,
    part: int = 0,
    parts: int = 1,
    numbered: bool = False,
) -> Iterator[Parsed]:
    """Part `part` of `parts` of one annotation file, with the checks of `parse_annotation_file`.

    The part's output is collected before anything is yielded: a part that fails midway (a read that
    failed, a parser bug) yields only its `annotation_unreadable` rejection, naming the part, and is
    never half-reported. What is wrong with the file itself (malformed JSON) the format reports from
    part 0 only. A format without `parse_part` is parsed whole by part 0.
    """
    if not 0 <= part < parts:
        raise ValueError(f"part {part} is not in 0..{parts - 1}")
    if fmt.parse_part is None:
        if part == 0:
            try:
                with open_stream() as stream:
                    data = stream.read(context.max_annotation_bytes + 1)  # enough to tell it is too large
            except Exception as error:
                yield _unreadable(source, error)
                return
            yield from parse_annotation_file(fmt, source, data, context, numbered)
        return
    parse_part = fmt.parse_part_numbered if numbered and fmt.parse_part_numbered else fmt.parse_part
    try:
        parsed = list(parse_part(source, open_stream, context, part, parts))
    except Exception as error:  # a failed read or a parser bug costs this part, and says so: never silently
        yield _unreadable(source, error, f"part {part + 1} of {parts}: ")
        return
    for item in parsed:
        yield from _checked(source, item, context)


def _unreadable(source: str, error: Exception, where: str = "") -> Rejection:
    return Rejection(source, "annotation_unreadable", f"{where}{type(error).__name__}: {error}", ITEM_ANNOTATION)


def flattened(items: Iterable[Parsed]) -> Iterator[Parsed]:
    """Parsed items with each record's box rejections (`ImageRecord.rejected_boxes`) as Rejections of
    their own just before it, and the record without them: one flat list of what a parse kept and
    rejected, for readers that do not write images (tests, tools)."""
    for item in items:
        if isinstance(item, ImageRecord) and item.rejected_boxes:
            yield from box_rejections(item)
            item = dataclasses.replace(item, rejected_boxes=())
        yield item


def _checked(source: str, item: Parsed, context: ParseContext) -> Iterator[Parsed]:
    """`checked`, and for a record refused here its parser's box rejections, reported on their own: the
    refusal carries the boxes the record carries (`boxes`), never a box twice."""
    result = checked(source, item, context)
    yield result
    if isinstance(item, ImageRecord) and isinstance(result, Rejection):
        yield from box_rejections(item)


def checked(source: str, item: Parsed, context: ParseContext = NO_CONTEXT) -> Parsed:
    """One parsed item after the checks every format needs: a record with an unsafe image path is
    rejected; a safe one gets its normalized key, its source id and its split."""
    if not isinstance(item, ImageRecord):
        return item
    key = paths.image_key(item.key)
    if key is None:
        return Rejection(
            source, "path_outside_images", f"image path {item.key!r} is not inside --images", boxes=len(item.boxes)
        )
    relative_source = (
        context.annotations_root and paths.relative_to(context.annotations_root, source)
    ) or source.rsplit("/", 1)[-1]
    source_split = (
        canonical_split(item.source_split) if item.source_split else None
    ) or split_from_path(key) or split_from_path(relative_source)
    return dataclasses.replace(item, key=key, source_id=item.source_id or key, source_split=source_split)


def _registry() -> Dict[str, AnnotationFormat]:
    from transforms.formats import coco, createml, csv_format, cvat, labelme, voc, yolo

    formats = (voc, coco, yolo, csv_format, cvat, labelme, createml)
    return {module.FORMAT.name: module.FORMAT for module in formats}


FORMATS = _registry()
