"""TFDS metadata written with plain json equals TFDS's own, every split loads with TFDS and matches the
source annotations; the hand-off README's snippets point at files that exist."""
from __future__ import annotations

import glob
import json
import re
import shutil

import numpy as np
import pytest
import tensorflow as tf

from conftest import voc_boxes
from raccoon_records import raccoon_records
from transforms.reports.handoff import handoff_readme
from transforms.records.tfds_metadata import DESCRIPTION, FEATURES, dataset_info_json, features_json, od_features


def test_features_json_is_what_tfds_writes_for_the_od_features(tmp_path):
    od_features().save_config(str(tmp_path))
    assert features_json() == (tmp_path / FEATURES).read_text()


def test_dataset_info_lists_splits_in_name_order_with_record_bytes():
    info = json.loads(dataset_info_json("d", {"val": [(2, 10)], "train": [(3, 30), (0, 0)]}))
    assert [(s["name"], s["shardLengths"], s["numBytes"]) for s in info["splits"]] == [
        ("train", ["3", "0"], "30"), ("val", ["2"], "10")
    ]


@pytest.fixture(scope="module")
def converted(raccoon, tmp_path_factory):
    return raccoon_records(raccoon, tmp_path_factory)


@pytest.mark.slow
def test_published_metadata_equals_tfds_write_metadata(converted, tmp_path):
    """TFDS counts the records itself here (split_infos=None): shard lengths and sizes are checked too."""
    import tensorflow_datasets as tfds

    copy = tmp_path / "copy"
    copy.mkdir()
    for shard in glob.glob(str(converted / "*.tfrecord-*")):
        shutil.copy(shard, copy)
    tfds.folder_dataset.write_metadata(data_dir=str(copy), features=od_features(), check_data=False, description=DESCRIPTION)
    for name in ("dataset_info.json", "features.json"):
        assert (converted / name).read_text() == (copy / name).read_text(), name


@pytest.mark.slow
def test_every_split_loads_with_tfds_and_matches_the_source(raccoon, converted):
    import tensorflow_datasets as tfds

    summary = json.loads((converted / "summary.json").read_text())
    builder = tfds.builder_from_directory(str(converted))
    assert set(builder.info.splits) == {"train", "val", "test"}
    seen = set()
    for split in ("train", "val", "test"):
        count = 0
        for example in tfds.as_numpy(builder.as_dataset(split=split)):
            image = example["image"]
            filename = image["filename"].decode()
            source = (raccoon / "images" / filename).read_bytes()
            assert np.array_equal(image["encoded"], tf.io.decode_image(source, channels=3).numpy()), filename
            xml_name, (width, height), boxes = voc_boxes(raccoon / "annotations" / filename.replace(".jpg", ".xml"))
            assert (image["width"], image["height"]) == (width, height)
            bbox = image["object"]["bbox"]
            expected = [(x0 / width, y0 / height, x1 / width, y1 / height) for _, x0, y0, x1, y1 in boxes]
            actual = list(zip(bbox["xmin"], bbox["ymin"], bbox["xmax"], bbox["ymax"]))
            assert actual == [pytest.approx(box, abs=1e-6) for box in expected], filename
            assert [text.decode() for text in image["object"]["class"]["text"]] == [label for label, *_ in boxes]
            assert list(image["object"]["class"]["label"]) == [1] * len(boxes)
            assert len(image["object"]["area"]) == 0  # VOC has no area: an optional list, absent, still loads
            seen.add(filename)
            count += 1
        assert count == builder.info.splits[split].num_examples == summary["splits"][split]["images"]
    assert len(seen) == 200


@pytest.mark.slow
def test_handoff_readme_snippets_point_at_the_files(converted):
    readme = (converted / "README.md").read_text()
    assert "| train |" in readme and "| 1 | raccoon | 217 |" in readme
    assert "num_classes: 1\n" in readme and "num_classes: 2\n" in readme  # OD API; Model Garden adds background
    for pattern in re.findall(r'input_path: ["\']([^"\']+)["\']', readme):
        assert glob.glob(pattern), pattern
    (label_map,) = set(re.findall(r'label_map_path: "([^"]+)"', readme))
    assert open(label_map).read() == (converted / "label_map.pbtxt").read_text()
    assert f'tfds.builder_from_directory("{converted}")' in readme


def test_handoff_readme_for_a_gs_dataset_with_masks_and_no_val_split():
    summary = {
        "images_written": 3, "images_rejected": 0, "boxes": {"written": 4},
        "splits": {"train": {"images": 2, "boxes": 3, "shards": 1}, "test": {"images": 1, "boxes": 1, "shards": 1}},
        "classes": [{"id": 1, "name": "cat", "boxes": 1}, {"id": 4, "name": "dog", "boxes": 3}],
        "config": {"include_masks": True},
    }
    readme = handoff_readme(summary, "gs://bucket/out/", "pets")
    assert "num_classes: 4\n" in readme  # the largest id, which the OD API needs, not the number of names
    assert 'input_path: "gs://bucket/out/pets-test.tfrecord-*"' in readme  # test evaluates when there is no val
    assert readme.count("mask_type: PNG_MASKS") == 2 and "include_mask=True" in readme
