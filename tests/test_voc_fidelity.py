"""VOC records as the OD API's create_pascal_tf_record writes them: difficult, truncated and view per object."""
from __future__ import annotations

import json

import pytest

from tests import image_factory as make
from tests.conftest import read_examples, run_cli
from transforms.formats import voc

XML = """<annotation><filename>a.jpg</filename><size><width>64</width><height>48</height></size>
<object><name>cat</name><pose>Left</pose><truncated>1</truncated><difficult>1</difficult>
<bndbox><xmin>1</xmin><ymin>2</ymin><xmax>30</xmax><ymax>40</ymax></bndbox></object>
<object><name>dog</name><bndbox><xmin>5</xmin><ymin>6</ymin><xmax>20</xmax><ymax>21</ymax></bndbox></object>
</annotation>"""


def test_a_missing_tag_is_zero_for_that_object_and_the_pose_is_its_view():
    (record,) = voc.parse("a.xml", XML.encode())
    cat, dog = record.boxes
    assert (cat.difficult, cat.truncated, cat.view) == (True, True, "Left")
    assert (dog.difficult, dog.truncated, dog.view) == (False, False, "Unspecified")


@pytest.mark.slow
def test_records_carry_every_object_key_and_skip_difficult_drops_and_counts(tmp_path):
    images, annotations = tmp_path / "images", tmp_path / "annotations"
    images.mkdir()
    annotations.mkdir()
    (images / "a.jpg").write_bytes(make.encode(make.gradient(64, 48), "JPEG"))
    (annotations / "a.xml").write_text(XML)
    common = ("convert", "--format", "voc", "--annotations", annotations, "--images", images, "--splits", "train=1.0")
    run_cli(*common, "--output", tmp_path / "all", check_exit=0)
    (example,) = read_examples(sorted((tmp_path / "all").glob("*.tfrecord-*")))
    assert example["image/object/difficult"] == [1, 0]
    assert example["image/object/truncated"] == [1, 0]
    assert example["image/object/view"] == [b"Left", b"Unspecified"]

    result = run_cli(*common, "--output", tmp_path / "easy", "--skip_difficult", check_exit=0)
    (example,) = read_examples(sorted((tmp_path / "easy").glob("*.tfrecord-*")))
    assert example["image/object/class/text"] == [b"dog"] and example["image/object/difficult"] == [0]
    boxes = json.loads((tmp_path / "easy" / "summary.json").read_text())["boxes"]
    assert boxes["dropped_difficult"] == 1 and boxes["written"] == 1 and boxes["read"] == 2
    assert "--skip_difficult: 1 boxes marked difficult dropped" in result.stdout
