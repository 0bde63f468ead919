"""No image bytes cross a shuffle: every element entering a GroupByKey of the real graph is metadata.

Elements are packed batches (a shard's records, its image files, a parse task's files, image hashes), so
the test walks each one, unpacking what is packed: no byte string in it is anywhere near an image's size,
and its pickled size per item it carries is small.
"""
from __future__ import annotations

import dataclasses
import pickle

import apache_beam as beam
import pytest
from apache_beam.pipeline import PipelineVisitor
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipeline.graph import build_convert_pipeline
from transforms.local.run import LocalRun
from pipeline.options import resolve_convert
from transforms.model import ImageRecord, unpack

pytestmark = pytest.mark.slow

LARGEST_METADATA = 2048  # bytes per item; a typical raccoon photo is some thirty times larger
LARGEST_BYTE_STRING = 1024


_ROW_LENGTH = len(dataclasses.fields(ImageRecord))


def _is_item(value) -> bool:
    """An image file (path, size), a parse task (path, part, parts), an image hash (sha256, key) or
    (sha256, key, images root, source, boxes, shard), or a record row (key, source, ...)."""
    if not isinstance(value, tuple) or not value or not isinstance(value[0], str):
        return False
    plain = all(isinstance(v, int) and not isinstance(v, bool) for v in value[1:])  # not a (tag, True) marker
    image_hash = len(value) in (2, 6) and len(value[0]) == 64 and isinstance(value[1], str)
    return (plain and len(value) in (2, 3)) or image_hash or (len(value) == _ROW_LENGTH and isinstance(value[3], tuple))


def _unpacked(value: bytes):
    """The values of a packed batch (whose bytes are then measured item by item), else None."""
    try:
        return unpack(value)
    except Exception:
        return None


def _walk(value):
    """(longest byte string, items) of a nested element.

    Items are records and record rows (key, ...), (path, size) image files and (path, part, parts) parse tasks.
    """
    if isinstance(value, (bytes, bytearray)):
        values = _unpacked(value)
        return (len(value), 0) if values is None else _walk(values)
    if isinstance(value, str) or not isinstance(value, (tuple, list, dict)) and not dataclasses.is_dataclass(value):
        return 0, 0
    if isinstance(value, ImageRecord):
        return max((_walk(field)[0] for field in dataclasses.astuple(value)), default=0), 1
    if _is_item(value):
        return max((_walk(field)[0] for field in value), default=0), 1
    children = value.values() if isinstance(value, dict) else (
        dataclasses.astuple(value) if dataclasses.is_dataclass(value) else value)
    walked = [_walk(child) for child in children]
    return max((w[0] for w in walked), default=0), sum(w[1] for w in walked)


def _measure(element):
    longest, items = _walk(element)
    return longest, len(pickle.dumps(element)) / max(items, 1)
class _ShuffleInputs(PipelineVisitor):
    def __init__(self):
        self.inputs = []
        self.labels = []

    def visit_transform(self, node):
        if isinstance(node.transform, beam.GroupByKey):
            self.inputs.extend(node.inputs)
            self.labels.extend(node.full_label for _ in node.inputs)


def _raccoon_job(raccoon, output):
    return resolve_convert(
        {"annotations": [str(raccoon / "annotations")], "images": [str(raccoon / "images")],
         "output": str(output), "num_shards": 2, "drop_duplicates": True},
        [],
    )


def test_every_shuffled_element_is_metadata(raccoon, tmp_path):
    sizes = sorted(path.stat().st_size for path in (raccoon / "images").iterdir())
    assert sizes[len(sizes) // 2] > 10 * LARGEST_METADATA
    job = _raccoon_job(raccoon, tmp_path / "out")
    with TestPipeline() as p:
        build_convert_pipeline(p, job)
        visitor = _ShuffleInputs()
        p.visit(visitor)
        assert len(visitor.inputs) >= 3  # parse tasks, shard grouping (the join), duplicate search, ...

        def small(measures, may_be_empty=False):
            assert measures or may_be_empty, "nothing crossed this shuffle"
            if not measures:
                return
            assert max(longest for longest, _ in measures) <= LARGEST_BYTE_STRING, measures
            assert max(per_item for _, per_item in measures) <= LARGEST_METADATA, measures

        for index, (label, shuffled) in enumerate(zip(visitor.labels, visitor.inputs)):
            measures = shuffled | f"Measure{index}" >> beam.Map(_measure)
            # the duplicate counts' combine gets an accumulator per worker only when some images share bytes
            empty_ok = label.startswith("Publish/CountDuplicates")
            assert_that(measures | f"All{index}" >> beam.combiners.ToList(),
                        lambda lists, empty_ok=empty_ok: small(lists[0], empty_ok), label=f"Small{index}")


def test_a_spilled_run_shuffles_no_record_image_file_or_hash(raccoon, tmp_path):
    """On a local run they wait in the spill folder, as do the parse tasks and the image listing: no
    shuffle carries any (but the tallies', whose (name, count) pairs the walk cannot tell from files)."""
    job = _raccoon_job(raccoon, tmp_path / "out")
    (tmp_path / "spill").mkdir()
    with TestPipeline() as p:
        build_convert_pipeline(p, job, local=LocalRun(str(tmp_path / "spill")))
        visitor = _ShuffleInputs()
        p.visit(visitor)
        checked = [label for label in visitor.labels if not label.startswith("Sum/")]
        assert {label.split("/")[0] for label in checked} >= {"Source", "WriteShards", "DropDuplicates", "FindDuplicates"}
        for index, (label, shuffled) in enumerate(zip(visitor.labels, visitor.inputs)):
            if label in checked:
                items = shuffled | f"Items{index}" >> beam.Map(lambda element: _walk(element)[1])
                assert_that(items | f"Sum{index}" >> beam.CombineGlobally(sum), equal_to([0]), label=f"None{index}")
