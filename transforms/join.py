"""Annotations meet image files, by the image's path relative to --images."""
from __future__ import annotations

import dataclasses
import posixpath

import apache_beam as beam

from transforms import paths
from transforms.formats import AnnotationFormat
from transforms.model import ITEM_ANNOTATION, RELATIVE, ImageRecord, Rejection
from transforms.read import REJECTED
from transforms.source_splits import split_from_path
from transforms.tally import TALLY, CountingDoFn


def _reject(rejection: Rejection):
    return beam.pvalue.TaggedOutput(REJECTED, rejection)


class _MatchRecordToImage(CountingDoFn):
    def __init__(self, images_root: str, fmt: AnnotationFormat):
        self._images_root = images_root
        self._format = fmt
        self._negatives = fmt.unlabeled_images_are_negatives
        self._by_stem = fmt.images_by_stem

    def process(self, element):
        key, grouped = element
        records = sorted(grouped["records"], key=lambda record: record.source)
        images = sorted(grouped["images"])  # (relative path, size); several only when matched by stem
        self.count("images_read", max(1, len(images)))
        if not records:
            for relative, size in images:
                yield from self._unannotated(relative, size)
            return
        kept, *extra = records
        for duplicate in extra:  # two annotation files describing one image: the first by path wins
            detail = f"{key} is already annotated by {kept.source}"
            yield _reject(Rejection(duplicate.source, "annotation_duplicate", detail, ITEM_ANNOTATION, len(duplicate.boxes)))
        if not images and self._format.embedded_image is not None:
            # The writer takes the image from the annotation file itself, if it embeds one.
            yield dataclasses.replace(kept, embedded_format=self._format.name)
            return
        if not images:
            yield _reject(Rejection(kept.source, "image_missing", f"{key} is not under --images", boxes=len(kept.boxes)))
            return
        (relative, size), *others = images
        for other, _ in others:  # x.jpg and x.png share one label file: only the first can have it
            detail = f"{kept.source} also fits {relative}, which takes it"
            yield _reject(Rejection(paths.join(self._images_root, other), "image_label_ambiguous", detail))
        source_id = relative if self._by_stem else kept.source_id
        yield dataclasses.replace(
            kept, key=relative, source_id=source_id, image_bytes=size, images_root=self._images_root
        )

    def _unannotated(self, relative: str, size: int):
        path = paths.join(self._images_root, relative)
        if self._negatives:
            yield ImageRecord(
                key=relative, source=path, source_id=relative, units=RELATIVE, source_split=split_from_path(relative),
                image_bytes=size, images_root=self._images_root,
            )
        else:
            yield _reject(Rejection(path, "image_unannotated", "no annotation names this image"))


class JoinImages(beam.PTransform):
    """(records, (relative path, size) of image files) -> records with their file and its size.

    Both kinds of orphan are reported: an annotation whose image is missing, and an image no
    annotation names (for formats where that means a negative, such as YOLO, it becomes one).
    """

    def __init__(self, images_root: str, fmt: AnnotationFormat):
        super().__init__()
        self._images_root = images_root
        self._format = fmt

    def expand(self, inputs):
        records, images = inputs
        by_stem = self._format.images_by_stem
        image_key = (lambda relative: posixpath.splitext(relative)[0]) if by_stem else (lambda relative: relative)
        return (
            {
                "records": records | "KeyRecords" >> beam.Map(lambda record: (record.key, record)),
                "images": images | "KeyImages" >> beam.Map(lambda image: (image_key(image[0]), image)),
            }
            | "ByImagePath" >> beam.CoGroupByKey()
            | "Match" >> beam.ParDo(_MatchRecordToImage(self._images_root, self._format)).with_outputs(
                REJECTED, TALLY, main="records"
            )
        )
