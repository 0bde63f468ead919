"""Beam metrics counters: the same names and values as the tallies summary.json is built from."""
from __future__ import annotations

import json
import shutil

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from tests.conftest import REPO
from transforms.model import ITEM_BOX, ITEM_IMAGE, Rejection
from transforms.beam import rejections as rejections_module
from transforms.beam.rejections import StageRejections, merge_parts
from transforms.beam.tally import NAMESPACE, TALLY, counters_from, metric_name

SAMPLE = REPO / "sample_data" / "raccoon"


def test_metric_names():
    assert metric_name("images_read") == "images_read"
    assert metric_name(("split_images", "train")) == "split_images/train"


@pytest.fixture(scope="module")
def run_with_metrics(tmp_path_factory):
    """The real graph on the DirectRunner, in this process, so PipelineResult.metrics() can be read.

    The sample plus a malformed annotation, an annotation naming a missing image and a box outside
    its image, so rejections and clipping are counted too.
    """
    from pipeline.graph import build_convert_pipeline
    from pipeline.options import resolve_convert

    root = tmp_path_factory.mktemp("metrics")
    shutil.copytree(SAMPLE / "annotations", root / "annotations")
    shutil.copytree(SAMPLE / "images", root / "images")
    (root / "annotations" / "broken.xml").write_text("<annotation><filename>x.jpg")
    missing = (SAMPLE / "annotations" / "raccoon-1.xml").read_text().replace("raccoon-1.jpg", "gone.jpg")
    (root / "annotations" / "missing.xml").write_text(missing)
    output = root / "out"
    job = resolve_convert(
        {"format": "voc", "annotations": [str(root / "annotations")], "images": [str(root / "images")],
         "output": str(output), "name": "raccoon"},
        [],
    )
    pipeline = beam.Pipeline(options=PipelineOptions(job.beam_args))
    build_convert_pipeline(pipeline, job)
    result = pipeline.run()
    result.wait_until_finish()
    return counters_from(result.metrics()), json.loads((output / "summary.json").read_text())


def test_counters_agree_with_the_summary(run_with_metrics):
    counters, summary = run_with_metrics
    assert summary["images_rejected"] >= 1 and summary["rejections"]  # the bad items were seen
    assert counters["images_read"] == summary["images_read"] == 23
    assert counters["images_written"] == summary["images_written"] == 22
    assert counters["annotation_files_read"] == summary["annotation_files_read"]
    for key in ("read", "written", "clipped"):
        assert counters.get(f"boxes_{key}", 0) == summary["boxes"][key], key
    for split, counts in summary["splits"].items():
        assert counters.get(f"split_images/{split}", 0) == counts["images"], split
        assert counters.get(f"split_boxes/{split}", 0) == counts["boxes"], split
    for item in summary["classes"]:
        assert counters[f"class_boxes/{item['name']}"] == item["boxes"]
    assert all(isinstance(value, int) for value in counters.values())


def test_rejections_are_counted_by_reason_and_staged_as_sorted_parts(tmp_path, monkeypatch):
    monkeypatch.setattr(rejections_module, "PART_ROWS", 3)  # several parts from one bundle
    rejections = [
        Rejection("a.xml", "xml_malformed", "bad", "annotation"),
        Rejection("c.jpg", "image_truncated", "cut", ITEM_IMAGE, boxes=1),
        Rejection("b.jpg", "image_truncated", "cut", ITEM_IMAGE, boxes=2),
        Rejection("d.xml", "box_inverted", "min > max", ITEM_BOX),
        Rejection("b.jpg", "image_truncated", "cut", ITEM_IMAGE, boxes=2),
    ]
    pipeline = TestPipeline()
    staged = pipeline | beam.Create(rejections) | beam.ParDo(StageRejections(str(tmp_path))).with_outputs(TALLY, main="parts")
    tallies = staged[TALLY] | beam.CombinePerKey(sum)
    assert_that(tallies, equal_to([
        (("rejected", "image_truncated"), 3), (("rejected", "xml_malformed"), 1), (("rejected", "box_inverted"), 1),
        ("rejected_images", 3), ("rejected_boxes", 1), ("rejected_annotations", 1), ("boxes_on_rejected_items", 5),
    ]), label="tallies")
    result = pipeline.run()
    result.wait_until_finish()
    counters = counters_from(result.metrics())
    assert counters["rejected/image_truncated"] == 3
    assert counters["rejected_images"] == 3 and counters["rejected_boxes"] == 1
    assert NAMESPACE == "od_tfrecords"

    merged = tmp_path / "rejected.jsonl"
    monkeypatch.setattr(rejections_module, "MERGE_FAN_IN", 2)  # merged in rounds
    merge_parts(sorted(str(path) for path in (tmp_path / rejections_module.PARTS_FOLDER).iterdir()), str(merged),
                str(tmp_path / "scratch"))
    expected = "".join(rejection.to_json() + "\n" for rejection in sorted(rejections, key=lambda r: (r.sort_key(), r.to_json())))
    assert merged.read_text() == expected
