"""No image bytes cross a shuffle: every element entering a GroupByKey of the real graph is small."""
from __future__ import annotations

import pickle

import apache_beam as beam
import pytest
from apache_beam.pipeline import PipelineVisitor
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that

from pipeline.graph import build_convert_pipeline
from pipeline.options import resolve_convert

pytestmark = pytest.mark.slow

LARGEST_METADATA = 2048  # bytes; a typical raccoon photo is some thirty times larger


class _ShuffleInputs(PipelineVisitor):
    def __init__(self):
        self.inputs = []

    def visit_transform(self, node):
        if isinstance(node.transform, beam.GroupByKey):
            self.inputs.extend(node.inputs)


def test_every_shuffled_element_is_metadata(raccoon, tmp_path):
    sizes = sorted(path.stat().st_size for path in (raccoon / "images").iterdir())
    assert sizes[len(sizes) // 2] > 10 * LARGEST_METADATA
    job = resolve_convert(
        {"annotations": [str(raccoon / "annotations")], "images": [str(raccoon / "images")],
         "output": str(tmp_path / "out"), "num_shards": 2},
        [],
    )
    with TestPipeline() as p:
        build_convert_pipeline(p, job)
        visitor = _ShuffleInputs()
        p.visit(visitor)
        assert len(visitor.inputs) >= 4  # distinct paths, join, shard grouping, duplicate search, ...

        def small(sizes):
            assert sizes and max(sizes) <= LARGEST_METADATA, max(sizes)

        for index, shuffled in enumerate(visitor.inputs):
            sizes = shuffled | f"Size{index}" >> beam.Map(lambda element: len(pickle.dumps(element)))
            assert_that(sizes | f"All{index}" >> beam.combiners.ToList(), lambda lists: small(lists[0]),
                        label=f"Small{index}")
