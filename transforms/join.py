"""Annotations meet image files, by the image's path relative to --images: pure functions.

The pipeline groups both sides by shard (a hash of the join key), so each shard writer joins its own
share in memory; these functions do that join for one source. Both kinds of orphan are reported: an
annotation whose image is missing, and an image no annotation names (for formats where that means a
negative, such as YOLO, it becomes one).
"""
from __future__ import annotations

import dataclasses
import posixpath
from collections import defaultdict
from typing import Iterable, Iterator, List, Sequence, Tuple, Union

from transforms import paths
from transforms.formats import FORMATS, AnnotationFormat
from transforms.model import ITEM_ANNOTATION, RELATIVE, ImageRecord, Rejection, box_rejections, unpack, unpack_records
from transforms.source_splits import split_from_path

ImageFile = Tuple[str, int]  # (path relative to --images, size in bytes)
MISSING_DETAIL = " is not under --images"  # after the image's key: a refused run's hint looks for it elsewhere


@dataclasses.dataclass(frozen=True)
class JoinRule:
    """How one source's records find their image files."""

    images_root: str
    format_name: str

    @property
    def format(self) -> AnnotationFormat:
        return FORMATS[self.format_name]

    def image_join_key(self, relative: str) -> str:
        """The key an image file joins on: its relative path, or its stem for formats that name no extension."""
        return posixpath.splitext(relative)[0] if self.format.images_by_stem else relative


@dataclasses.dataclass
class Joined:
    records: List[ImageRecord]
    rejections: List[Rejection]
    images_read: int  # each image once, whichever way it ends: the summary's images_read


def join_source(records: Iterable[ImageRecord], images: Iterable[ImageFile], rule: JoinRule) -> Joined:
    """One source's records and image files (both of one shard, say) joined by key, in key order."""
    records_by_key, images_by_key = defaultdict(list), defaultdict(list)
    for record in records:
        records_by_key[record.key].append(record)
    for image in images:
        images_by_key[rule.image_join_key(image[0])].append(image)
    joined = Joined([], [], 0)
    for key in sorted(records_by_key.keys() | images_by_key.keys()):
        for item in _join_key(key, records_by_key.get(key, []), images_by_key.get(key, []), rule):
            (joined.records if isinstance(item, ImageRecord) else joined.rejections).append(item)
        joined.images_read += max(1, len(images_by_key.get(key, ())))
    return joined


def _join_key(
    key: str, records: List[ImageRecord], images: List[ImageFile], rule: JoinRule
) -> Iterator[Union[ImageRecord, Rejection]]:
    if len(records) > 1:
        # The first by annotation file wins; ties (one COCO file naming an image twice) broken by everything
        # else, so the winner never depends on the order the records arrived in.
        records = sorted(records, key=lambda record: (record.source, record.source_id, repr(record)))
    images = sorted(images)  # several only when matched by stem
    if not records:
        for relative, size in images:
            yield _unannotated(relative, size, rule)
        return
    kept, *extra = records
    for duplicate in extra:  # two annotation files describing one image: the first by path wins
        detail = f"{key} is already annotated by {kept.source}"
        yield Rejection(duplicate.source, "annotation_duplicate", detail, ITEM_ANNOTATION, len(duplicate.boxes))
        yield from box_rejections(duplicate)  # its parser's, on their own: the rejection carries its boxes
    if not images and rule.format.embedded_image is not None:
        # The writer takes the image from the annotation file itself, if it embeds one.
        yield dataclasses.replace(kept, embedded_format=rule.format_name)
        return
    if not images:
        yield Rejection(kept.source, "image_missing", f"{key}{MISSING_DETAIL}", boxes=len(kept.boxes))
        yield from box_rejections(kept)
        return
    (relative, size), *others = images
    for other, _ in others:  # x.jpg and x.png share one label file: only the first can have it
        detail = f"{kept.source} also fits {relative}, which takes it"
        yield Rejection(paths.join(rule.images_root, other), "image_label_ambiguous", detail)
    source_id = relative if rule.format.images_by_stem else kept.source_id
    yield dataclasses.replace(kept, key=relative, source_id=source_id, image_bytes=size, images_root=rule.images_root)


def _unannotated(relative: str, size: int, rule: JoinRule) -> Union[ImageRecord, Rejection]:
    path = paths.join(rule.images_root, relative)
    if rule.format.unlabeled_images_are_negatives:
        return ImageRecord(
            key=relative, source=path, source_id=relative, units=RELATIVE, source_split=split_from_path(relative),
            image_bytes=size, images_root=rule.images_root,
        )
    return Rejection(path, "image_unannotated", "no annotation names this image")


def join_shard(
    record_batches: Iterable[Tuple[int, bytes]],
    image_batches: Iterable[Tuple[int, bytes]],
    rules: Sequence[JoinRule],
) -> Joined:
    """A shard's (source index, packed batch) lists of records and of image files, joined source by source."""
    records_by_source, images_by_source = defaultdict(list), defaultdict(list)
    for source, packed in record_batches:
        records_by_source[source].extend(unpack_records(packed))
    for source, batch in image_batches:
        images_by_source[source].extend(unpack(batch))
    joined = Joined([], [], 0)
    for source in sorted(records_by_source.keys() | images_by_source.keys()):
        part = join_source(records_by_source[source], images_by_source[source], rules[source])
        joined.records.extend(part.records)
        joined.rejections.extend(part.rejections)
        joined.images_read += part.images_read
    return joined
