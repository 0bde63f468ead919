"""dataset_info.json and features.json: the output folder loads with `tfds.builder_from_directory`.

TensorFlow Datasets' own API is the source of truth: `od_features()` describes the OD API keys as
nested FeaturesDicts (TFDS joins nested names with `/`, so image -> encoded is `image/encoded`), and
`tfds.folder_dataset.write_metadata` writes the two files from it. That call costs seconds (importing
TensorFlow, and reading every record to count it), more than the whole conversion of a small dataset,
so publishing writes the same two files with plain json instead; a test proves they are byte-identical
to what write_metadata writes for the same folder, and another loads every split with TFDS.
"""
from __future__ import annotations

import json
from typing import Dict, Mapping, Sequence, Tuple


DATASET_INFO, FEATURES = "dataset_info.json", "features.json"
VERSION = "1.0.0"
FILEPATH_TEMPLATE = "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}"  # what our shard_file_name writes
DESCRIPTION = (
    "Object detection records in the TensorFlow Object Detection API's tf.train.Example schema, "
    "written by od-tfrecords; label_map.pbtxt, summary.json and README.md are beside them."
)

_TFDS = "tensorflow_datasets.core.features."
_PER_OBJECT_FLOATS = ("bbox/xmin", "bbox/ymin", "bbox/xmax", "bbox/ymax", "area")
_PER_OBJECT_INTS = ("class/label", "is_crowd", "difficult", "truncated")


def od_features():
    """The OD API keys as TFDS features (imports TensorFlow Datasets: for tests and notebooks, not publishing).

    Scalars are required in every record; per-object lists are Sequences, which TFDS parses with
    allow_missing, so the optional lists (area, is_crowd, difficult, truncated) may be absent.
    """
    import numpy as np
    import tensorflow_datasets as tfds

    features = tfds.features
    objects: Dict[str, object] = {}
    for key in _PER_OBJECT_FLOATS:
        _nest(objects, key, features.Sequence(np.float32))
    for key in _PER_OBJECT_INTS:
        _nest(objects, key, features.Sequence(np.int64))
    _nest(objects, "class/text", features.Sequence(features.Text()))
    return features.FeaturesDict(
        {
            "image": {
                "encoded": features.Image(),
                "format": features.Text(),
                "filename": features.Text(),
                "source_id": features.Text(),
                "key": {"sha256": features.Text()},
                "height": features.Scalar(np.int64),
                "width": features.Scalar(np.int64),
                "object": objects,
            }
        }
    )


def _nest(tree: dict, slash_path: str, value) -> None:
    *parents, leaf = slash_path.split("/")
    for parent in parents:
        tree = tree.setdefault(parent, {})
    tree[leaf] = value


# --- the same, as the JSON TFDS serializes it to (checked against TFDS by tests/test_tfds_metadata.py) --


def _features_dict(children: Mapping[str, dict]) -> dict:
    return {"featuresDict": {"features": dict(children)}, "pythonClassName": _TFDS + "features_dict.FeaturesDict"}


def _tensor(dtype: str) -> dict:
    return {"dtype": dtype, "encoding": "none", "shape": {}}


def _text() -> dict:
    return {"pythonClassName": _TFDS + "text_feature.Text", "text": {}}


def _sequence(feature: dict) -> dict:
    return {"pythonClassName": _TFDS + "sequence_feature.Sequence", "sequence": {"feature": feature, "length": "-1"}}


def _scalar(dtype: str) -> dict:
    return {"pythonClassName": _TFDS + "scalar.Scalar", "tensor": _tensor(dtype)}


def _image() -> dict:
    return {"image": {"dtype": "uint8", "shape": {"dimensions": ["-1", "-1", "3"]}}, "pythonClassName": _TFDS + "image_feature.Image"}


def _nested_json(tree: dict) -> dict:
    return _features_dict({name: _nested_json(child) if "pythonClassName" not in child else child for name, child in tree.items()})


def features_json() -> str:
    """features.json as TFDS writes it for od_features()."""
    objects: dict = {}
    for key in _PER_OBJECT_FLOATS:
        _nest(objects, key, _sequence({"pythonClassName": _TFDS + "tensor_feature.Tensor", "tensor": _tensor("float32")}))
    for key in _PER_OBJECT_INTS:
        _nest(objects, key, _sequence({"pythonClassName": _TFDS + "tensor_feature.Tensor", "tensor": _tensor("int64")}))
    _nest(objects, "class/text", _sequence(_text()))
    image = {
        "encoded": _image(),
        "format": _text(),
        "filename": _text(),
        "source_id": _text(),
        "key": {"sha256": _text()},
        "height": _scalar("int64"),
        "width": _scalar("int64"),
        "object": objects,
    }
    return json.dumps(_nested_json({"image": image}), indent=4, sort_keys=True)


SplitShards = Mapping[str, Sequence[Tuple[int, int]]]  # split -> [(records, record bytes) per shard, in order]


def dataset_info_json(name: str, splits: SplitShards, template: str = FILEPATH_TEMPLATE) -> str:
    """dataset_info.json as write_metadata writes it: splits in name order, sizes as the records' bytes
    (TFDS counts the serialized Examples, not the TFRecord framing); files named by `template`."""
    info = {
        "description": DESCRIPTION,
        "fileFormat": "tfrecord",
        "name": name,
        "splits": [
            {
                "filepathTemplate": template,
                "name": split,
                "numBytes": str(sum(size for _, size in shards)),
                "shardLengths": [str(count) for count, _ in shards],
            }
            for split, shards in sorted(splits.items())
        ],
        "version": VERSION,
    }
    return json.dumps(info, indent=2, sort_keys=True)
