"""Label ids as the source numbers its classes (--class_ids source, the default; docs/design.md section 2): COCO
category_id, YOLO index + 1, CVAT label order; formats that number nothing sorted by name; --class_ids
sorted renumbers 1..N by name; --label_map and published ids win; two sources disagreeing end the run."""
from __future__ import annotations

import io
import json

import pytest

from tests import image_factory
from tests.conftest import read_examples, run_cli, shard_files
from transforms.beam.aggregate import BuildLabelMap
from transforms.class_map import MAP_KEY, SOURCE_CLASS
from transforms.formats import ClassNumbering, ParseContext, context_numbering, parse_annotation_file
from transforms.formats import coco, cvat, voc, yolo
from transforms.label_map import DECLARED, ZERO_USED, parse_label_map
from transforms.outcomes import UnusableInput

# --- what each format declares --------------------------------------------------------------------


def _coco(categories, annotations=(), images=({"id": 1, "file_name": "a.jpg"},)):
    return json.dumps({"images": list(images), "annotations": list(annotations), "categories": categories}).encode()


def _numbering(items):
    found = [item for item in items if isinstance(item, ClassNumbering)]
    assert len(found) <= 1
    return found[0] if found else None


def test_coco_declares_every_category_with_its_id_used_or_not():
    data = _coco([{"id": 90, "name": "toothbrush"}, {"id": 1, "name": "person"}, {"id": "3", "name": "car"},
                  {"id": 7, "name": "a"}, {"id": 7, "name": "b"}, {"id": -2, "name": "neg"}, {"id": "x", "name": "odd"}],
                 [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4]}])
    numbering = _numbering(coco.FORMAT.parse_numbered("i.json", data, coco.NO_CONTEXT))
    # id 7 has two names (its boxes are rejected), -2 and "x" are no ids: they number nothing
    assert numbering == ClassNumbering(((1, "person"), (3, "car"), (90, "toothbrush")), zero_used=False)


def test_coco_boxes_using_category_zero_are_noted():
    data = _coco([{"id": 0, "name": "cat"}, {"id": 1, "name": "dog"}],
                 [{"id": 1, "image_id": 1, "category_id": 0, "bbox": [1, 2, 3, 4]}])
    assert _numbering(coco.FORMAT.parse_numbered("i.json", data, coco.NO_CONTEXT)).zero_used
    unused = _coco([{"id": 0, "name": "cat"}, {"id": 1, "name": "dog"}],
                   [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4]}])
    assert not _numbering(coco.FORMAT.parse_numbered("i.json", unused, coco.NO_CONTEXT)).zero_used


def test_coco_parts_declare_once_and_each_notes_its_own_zero_boxes():
    images = [{"id": index, "file_name": f"{index}.jpg"} for index in range(1, 9)]
    annotations = [{"id": index, "image_id": index, "category_id": 0, "bbox": [1, 2, 3, 4]} for index in range(1, 9)]
    data = _coco([{"id": 0, "name": "cat"}], annotations, images)
    numberings = [_numbering(coco.FORMAT.parse_part_numbered("i.json", lambda: io.BytesIO(data), coco.NO_CONTEXT, part, 3))
                  for part in range(3)]
    assert numberings[0].ids == ((0, "cat"),) and all(not numbering.ids for numbering in numberings[1:])
    assert all(numbering.zero_used for numbering in numberings)


def test_plain_parse_yields_no_numbering():
    data = _coco([{"id": 1, "name": "person"}])
    assert _numbering(coco.parse("i.json", data)) is None
    assert _numbering(parse_annotation_file(coco.FORMAT, "i.json", data)) is None
    assert _numbering(parse_annotation_file(coco.FORMAT, "i.json", data, numbered=True)).ids == ((1, "person"),)


CVAT_META = """<?xml version="1.0" encoding="utf-8"?>
<annotations><version>1.1</version><meta><{kind}><id>1</id><labels>
  <label><name>zebra</name><type>rectangle</type><attributes/></label>
  <label><name>ant</name><type>any</type><attributes/></label>
  <label><name>hand</name><type>skeleton</type><attributes/></label>
  <label><name>thumb</name><type>points</type><parent>hand</parent><attributes/></label>
  <label><name>night</name><type>tag</type><attributes/></label>
</labels></{kind}></meta>
<image id="0" name="a.jpg" width="64" height="48"><box label="ant" occluded="0" xtl="1" ytl="2" xbr="30" ybr="40"/></image>
</annotations>"""


@pytest.mark.parametrize("kind", ["task", "project", "job"])
def test_cvat_numbers_labels_in_meta_order_from_one(kind):
    data = CVAT_META.format(kind=kind).encode()
    numbering = _numbering(cvat.FORMAT.parse_numbered("a.xml", data, cvat.NO_CONTEXT))
    assert numbering == ClassNumbering(((1, "zebra"), (2, "ant"), (3, "hand"), (4, "night")))
    assert _numbering(cvat.parse("a.xml", data)) is None


def test_yolo_class_k_is_id_k_plus_one_and_other_formats_number_nothing():
    context = ParseContext(classes=("person", "car", "dog"))
    assert context_numbering(yolo.FORMAT, context) == ClassNumbering(((1, "person"), (2, "car"), (3, "dog")))
    assert context_numbering(voc.FORMAT, context) is None
    assert voc.FORMAT.parse_numbered is None


# --- the label map step ----------------------------------------------------------------------------


def test_label_map_step_turns_notes_into_source_ids_whatever_their_order():
    elements = ["car", "person", (DECLARED, 0, "a.json", 1, "person"), (DECLARED, 0, "a.json", 3, "car"),
                (DECLARED, 0, "a.json", 0, "cat"), (ZERO_USED, 0), (MAP_KEY, "car"), (SOURCE_CLASS, "car")]
    ids = BuildLabelMap.label_ids(elements, {}, "source")
    assert ids == {"cat": 1, "person": 2, "car": 4} and (ids.rule, ids.shifted_by) == ("source", 1)
    assert BuildLabelMap.label_ids(list(reversed(elements)), {}, "source") == ids
    ids = BuildLabelMap.label_ids(elements, {}, "sorted")
    assert ids == {"car": 1, "person": 2} and (ids.rule, ids.shifted_by) == ("sorted", 0)


def test_label_map_step_ends_the_run_on_a_conflict_naming_both_sources():
    elements = ["person", (DECLARED, 0, "x.json", 1, "person"), (DECLARED, 1, "--classes", 2, "person")]
    with pytest.raises(UnusableInput, match="'person' has id 1 in coco:x.json .* id 2 in yolo:labels"):
        BuildLabelMap.label_ids(elements, {}, "source", sources=["coco:x.json", "yolo:labels"])
    assert BuildLabelMap.label_ids(elements, {}, "source", merged={"person"}) == {"person": 1}


# --- end to end with the real CLI -------------------------------------------------------------------


def _jpeg(width=64, height=48):
    return image_factory.encode(image_factory.gradient(width, height), "JPEG", quality=90)


def _coco_source(root, categories, boxes):
    """instances.json with one image per (category id) in `boxes`."""
    (root / "images").mkdir(parents=True)
    images, annotations = [], []
    for index, category_id in enumerate(boxes, 1):
        (root / "images" / f"{index}.jpg").write_bytes(_jpeg())
        images.append({"id": index, "file_name": f"{index}.jpg", "width": 64, "height": 48})
        annotations.append({"id": index, "image_id": index, "category_id": category_id, "bbox": [2, 3, 20, 30],
                            "area": 600.0, "iscrowd": 0})
    source = root / "instances.json"
    source.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return source


def _yolo_source(root, names, classes_used):
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for index, class_index in enumerate(classes_used):
        (root / "images" / f"y{index}.jpg").write_bytes(_jpeg())
        (root / "labels" / f"y{index}.txt").write_text(f"{class_index} 0.5 0.5 0.25 0.25\n")
    (root / "classes.txt").write_text("\n".join(names) + "\n")
    return root / "labels"


def _convert(*args, check_exit=0):
    return run_cli("convert", "--splits", "train=1.0", "--num_shards", "1", *map(str, args), check_exit=check_exit)


def _label_map(output):
    return parse_label_map((output / "label_map.pbtxt").read_text())


def _labels(output):
    return sorted((text.decode(), label) for example in read_examples(shard_files(output))
                  for text, label in zip(example["image/object/class/text"], example["image/object/class/label"]))


@pytest.mark.slow
def test_yolo_ids_are_index_plus_one_for_every_declared_name(tmp_path):
    labels = _yolo_source(tmp_path / "yolo", ["person", "car", "dog"], [2, 2])
    output = tmp_path / "out"
    _convert("--format", "yolo", "--annotations", labels, "--images", tmp_path / "yolo" / "images",
             "--classes", tmp_path / "yolo" / "classes.txt", "--output", output)
    assert _label_map(output) == {"person": 1, "car": 2, "dog": 3}
    assert _labels(output) == [("dog", 3), ("dog", 3)]
    summary = json.loads((output / "summary.json").read_text())
    assert summary["class_ids"] == {"rule": "source", "shifted_by": 0}


@pytest.mark.slow
def test_cvat_ids_follow_meta_order(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.jpg").write_bytes(_jpeg())
    (tmp_path / "annotations.xml").write_text(CVAT_META.format(kind="task"))
    output = tmp_path / "out"
    _convert("--annotations", tmp_path / "annotations.xml", "--images", tmp_path / "images", "--output", output)
    assert _label_map(output) == {"zebra": 1, "ant": 2, "hand": 3, "night": 4}
    assert _labels(output) == [("ant", 2)]


@pytest.mark.slow
def test_boxes_using_category_zero_shift_every_id_and_say_so(tmp_path):
    source = _coco_source(tmp_path / "coco", [{"id": 0, "name": "cat"}, {"id": 1, "name": "dog"}], [0, 1])
    output = tmp_path / "out"
    result = _convert("--annotations", source, "--images", tmp_path / "coco" / "images", "--output", output)
    assert _label_map(output) == {"cat": 1, "dog": 2}
    assert _labels(output) == [("cat", 1), ("dog", 2)]
    assert json.loads((output / "summary.json").read_text())["class_ids"] == {"rule": "source", "shifted_by": 1}
    assert "ids are shifted by 1" in result.stdout


@pytest.mark.slow
def test_two_sources_giving_one_class_different_ids_exit_2_unless_resolved(tmp_path):
    coco_file = _coco_source(tmp_path / "coco", [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}], [1, 3])
    labels = _yolo_source(tmp_path / "yolo", ["car", "person"], [0, 1])
    sources = ["--annotations", f"coco:{coco_file}", "--images", tmp_path / "coco" / "images",
               "--annotations", f"yolo:{labels}", "--images", tmp_path / "yolo" / "images",
               "--classes", tmp_path / "yolo" / "classes.txt"]
    result = _convert(*sources, "--output", tmp_path / "bad", check_exit=2)
    line = result.stderr.strip()
    assert "\n" not in line and "Traceback" not in line
    assert f"'car' has id 3 in coco:{coco_file}" in line and f"id 1 in yolo:{labels}" in line
    # resolved by a seed: --label_map ids win over both sources'
    (tmp_path / "seed.pbtxt").write_text("item { id: 7 name: 'car' }\nitem { id: 8 name: 'person' }\n")
    output = tmp_path / "seeded"
    _convert(*sources, "--label_map", tmp_path / "seed.pbtxt", "--output", output)
    assert _label_map(output) == {"car": 7, "person": 8}
    output = tmp_path / "sorted"
    _convert(*sources, "--class_ids", "sorted", "--output", output)
    assert _label_map(output) == {"car": 1, "person": 2}
    assert json.loads((output / "summary.json").read_text())["class_ids"] == {"rule": "sorted", "shifted_by": 0}


@pytest.mark.slow
def test_class_map_renames_keep_ids_null_leaves_the_map_and_merges_keep_the_smaller_id(tmp_path):
    categories = [{"id": 1, "name": "person"}, {"id": 4, "name": "Person"}, {"id": 7, "name": "pedestrian"},
                  {"id": 9, "name": "junk"}, {"id": 12, "name": "auto"}]
    source = _coco_source(tmp_path / "coco", categories, [4, 7, 12])
    (tmp_path / "map.yaml").write_text("Person: person\npedestrian: person\njunk: null\nauto: car\n")
    output = tmp_path / "out"
    _convert("--annotations", source, "--images", tmp_path / "coco" / "images", "--class_map", tmp_path / "map.yaml",
             "--output", output)  # `junk` no box uses is still a class of the annotations: no exit 2
    assert _label_map(output) == {"person": 1, "car": 12}
    assert _labels(output) == [("car", 12), ("person", 1), ("person", 1)]


@pytest.mark.slow
def test_incremental_runs_keep_published_ids(tmp_path):
    root = tmp_path / "coco"
    source = _coco_source(root, [{"id": 5, "name": "dog"}, {"id": 2, "name": "cat"}], [5, 2])
    output = tmp_path / "out"
    common = ["--annotations", source, "--images", root / "images", "--output", output, "--incremental"]
    _convert(*common, "--class_ids", "sorted")
    assert _label_map(output) == {"cat": 1, "dog": 2}
    document = json.loads(source.read_text())
    document["categories"].append({"id": 40, "name": "eel"})
    document["images"].append({"id": 3, "file_name": "3.jpg", "width": 64, "height": 48})
    document["annotations"].append({"id": 3, "image_id": 3, "category_id": 40, "bbox": [1, 1, 9, 9], "iscrowd": 0})
    (root / "images" / "3.jpg").write_bytes(_jpeg(40, 30))
    source.write_text(json.dumps(document))
    _convert(*common)  # source ids now, but the published ones never move
    assert _label_map(output) == {"cat": 1, "dog": 2, "eel": 40}


def test_handoff_readme_explains_num_classes_when_source_ids_leave_gaps():
    from transforms.reports.handoff import handoff_readme

    summary = {"images_written": 2, "images_rejected": 0, "boxes": {"written": 2},
               "splits": {"train": {"images": 2, "boxes": 2, "shards": 1}},
               "classes": [{"id": 1, "name": "person", "boxes": 1}, {"id": 90, "name": "toothbrush", "boxes": 1}]}
    readme = handoff_readme(summary, "/data/out", "coco")
    assert "num_classes: 90\n" in readme and "num_classes: 91\n" in readme
    assert "the largest id, 90, not the 2 classes" in readme
    summary["classes"][1]["id"] = 2
    assert "largest id" not in handoff_readme(summary, "/data/out", "coco")
