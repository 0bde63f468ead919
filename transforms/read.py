"""Finding and parsing annotation files, and listing the image files they may name."""
from __future__ import annotations

import os
import posixpath
import stat
from typing import Sequence

import apache_beam as beam
from apache_beam.io import fileio

from transforms import paths, storage
from transforms.class_map import ClassMap, apply_class_map
from transforms.formats import FORMATS, AnnotationFormat, ParseContext, parse_annotation_file
from transforms.images import ImageProblem
from transforms.model import ITEM_ANNOTATION, ITEM_BOX, ITEM_IMAGE, Ignored, ImageRecord, Rejection
from transforms.tally import TALLY, CountingDoFn

REJECTED = "rejected"

IMAGE_EXTENSIONS = frozenset([".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"])


def read_file(path: str, limit: int = -1) -> bytes:
    """The file's bytes (the first `limit` only, if given).

    A local path that is not a regular file (a named pipe, a device) is refused, never opened: reading
    one would block or never end.
    """
    if storage.is_local(path) and not stat.S_ISREG(os.stat(path).st_mode):
        raise OSError(f"{path} is not a regular file")
    return storage.read_bytes(path, limit)  # gs://: one GET per file, a client per worker, retries


def read_record_image(record: ImageRecord) -> bytes:
    """The bytes of a record's image: its file under --images, or the copy its annotation file embeds.

    Raises ImageProblem("image_missing") when an annotation embeds no image after all; OSError and
    filesystem errors when the file cannot be read.
    """
    if not record.embedded_format:
        return read_file(paths.join(record.images_root, record.key))
    embedded = FORMATS[record.embedded_format].embedded_image(read_file(record.source))
    if embedded is None:
        raise ImageProblem("image_missing", f"{record.key} is not under --images, nor embedded in the annotation")
    return embedded


class _ParseAnnotationFile(CountingDoFn):
    def __init__(self, fmt: AnnotationFormat, context: ParseContext, class_map: ClassMap):
        self._format = fmt
        self._context = context
        self._class_map = class_map

    def process(self, path: str):
        self.count("annotation_files_read")
        try:
            data = read_file(path)
        except Exception as error:  # an unreadable file is one rejection, whatever the filesystem raised
            yield beam.pvalue.TaggedOutput(
                REJECTED, Rejection(path, "annotation_unreadable", str(error), ITEM_ANNOTATION)
            )
            return
        for item in parse_annotation_file(self._format, path, data, self._context):
            if isinstance(item, Ignored):
                self.count(("ignored", item.what), item.count)
            elif isinstance(item, ImageRecord):
                self.count("boxes_read", len(item.boxes))
                record, dropped = apply_class_map(item, self._class_map)
                if dropped:
                    self.count("boxes_dropped_by_class_map", dropped)
                yield record
            else:
                self.count("boxes_read", 1 if item.item == ITEM_BOX else item.boxes)
                if item.item == ITEM_IMAGE:  # named, but refused before the join (e.g. an unsafe path)
                    self.count("images_read")
                yield beam.pvalue.TaggedOutput(REJECTED, item)


class ParseAnnotations(beam.PTransform):
    """Annotation file patterns -> ImageRecords (main output), Rejections and tallies.

    Matching happens on the workers and the matched paths are reshuffled, so millions of small VOC
    files are parsed in parallel rather than by whichever worker listed them.
    """

    def __init__(self, fmt: AnnotationFormat, patterns: Sequence[str], context: ParseContext, class_map: ClassMap):
        super().__init__()
        self._format = fmt
        self._patterns = list(patterns)
        self._context = context
        self._class_map = dict(class_map)

    def expand(self, pbegin):
        return (
            pbegin
            | "Patterns" >> beam.Create(self._patterns)
            | "Match" >> fileio.MatchAll(fileio.EmptyMatchTreatment.ALLOW)
            | "Paths" >> beam.Map(lambda metadata: metadata.path)
            | "Distinct" >> beam.Distinct()  # overlapping globs must not parse a file twice
            | "Parse" >> beam.ParDo(_ParseAnnotationFile(self._format, self._context, self._class_map)).with_outputs(REJECTED, TALLY, main="records")
        )


class ListImages(beam.PTransform):
    """Every image file under --images as (path relative to it, size in bytes)."""

    def __init__(self, images_root: str):
        super().__init__()
        self._root = images_root

    def expand(self, pbegin):
        root = self._root
        return (
            pbegin
            | "Root" >> beam.Create([paths.join(root, "**")])
            | "Match" >> fileio.MatchAll(fileio.EmptyMatchTreatment.ALLOW)
            | "Relative" >> beam.Map(lambda metadata: (paths.relative_to(root, metadata.path), metadata.size_in_bytes))
            | "ImagesOnly" >> beam.Filter(lambda item: posixpath.splitext(item[0])[1].lower() in IMAGE_EXTENSIONS)
        )
