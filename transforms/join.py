"""Annotations meet image files, by the image's path relative to --images."""
from __future__ import annotations

import dataclasses

import apache_beam as beam

from transforms import paths
from transforms.model import ITEM_ANNOTATION, Rejection
from transforms.read import REJECTED
from transforms.tally import TALLY, count


class _MatchRecordToImage(beam.DoFn):
    def __init__(self, images_root: str):
        self._images_root = images_root

    def process(self, element):
        key, grouped = element
        records = sorted(grouped["records"], key=lambda record: record.source)
        sizes = list(grouped["images"])
        yield count("images_read")
        if not records:
            yield beam.pvalue.TaggedOutput(
                REJECTED,
                Rejection(paths.join(self._images_root, key), "image_unannotated", "no annotation names this image"),
            )
            return
        kept, *extra = records
        for duplicate in extra:  # two annotation files describing one image: the first by path wins
            detail = f"{key} is already annotated by {kept.source}"
            yield beam.pvalue.TaggedOutput(
                REJECTED,
                Rejection(duplicate.source, "annotation_duplicate", detail, ITEM_ANNOTATION, len(duplicate.boxes)),
            )
        if not sizes:
            yield beam.pvalue.TaggedOutput(
                REJECTED,
                Rejection(kept.source, "image_missing", f"{key} is not under --images", boxes=len(kept.boxes)),
            )
            return
        yield dataclasses.replace(kept, image_bytes=sizes[0])


class JoinImages(beam.PTransform):
    """(records, (relative path, size) of image files) -> records with their file size.

    Both kinds of orphan are reported: an annotation whose image is missing, and an image no
    annotation names.
    """

    def __init__(self, images_root: str):
        super().__init__()
        self._images_root = images_root

    def expand(self, inputs):
        records, images = inputs
        return (
            {
                "records": records | "KeyRecords" >> beam.Map(lambda record: (record.key, record)),
                "images": images,
            }
            | "ByImagePath" >> beam.CoGroupByKey()
            | "Match" >> beam.ParDo(_MatchRecordToImage(self._images_root)).with_outputs(REJECTED, TALLY, main="records")
        )
