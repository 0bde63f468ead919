"""transforms/records/example.py and transforms/records/od_schema.py: the Example wire format, TFRecord framing and the
OD API record (docs/design.md section 3), checked against TensorFlow's own parsers."""
import hashlib
import struct

import pytest
import tensorflow as tf  # imported once for the module: it takes seconds
from hypothesis import given
from hypothesis import strategies as st

from transforms.boxes import NormalizedBox, normalize_boxes
from transforms.records.example import (
    bytes_feature,
    encode_example,
    float_feature,
    int64_feature,
    tfrecord_frame,
)
from transforms.formats import voc
from transforms.images.probe import ImageInfo, probe_image
from transforms.model import PIXELS, Box, ImageRecord
from transforms.records.od_schema import od_example

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def _values(feature):
    kind = feature.WhichOneof("kind")
    return kind, list(getattr(feature, kind).value)


def _parsed(serialized: bytes):
    example = tf.train.Example.FromString(serialized)
    return {key: _values(feature) for key, feature in example.features.feature.items()}


# --- encode_example -----------------------------------------------------------------------------


def test_each_feature_kind_parses_back_with_its_values():
    serialized = encode_example(
        {
            "bytes": bytes_feature([b"jpeg", b"", b"\x00\xff"]),
            "floats": float_feature([0.5, -1.25, 0.0, 2.0**127]),
            "ints": int64_feature([0, 1, -1, 127, 128, -300, INT64_MAX, INT64_MIN]),
        }
    )
    assert _parsed(serialized) == {
        "bytes": ("bytes_list", [b"jpeg", b"", b"\x00\xff"]),
        "floats": ("float_list", [0.5, -1.25, 0.0, 2.0**127]),
        "ints": ("int64_list", [0, 1, -1, 127, 128, -300, INT64_MAX, INT64_MIN]),
    }


def test_empty_lists_keep_their_kind():
    serialized = encode_example(
        {"b": bytes_feature([]), "f": float_feature([]), "i": int64_feature([])}
    )
    assert _parsed(serialized) == {
        "b": ("bytes_list", []),
        "f": ("float_list", []),
        "i": ("int64_list", []),
    }


def test_empty_example():
    assert encode_example({}) == b"\n\x00"
    assert tf.train.Example.FromString(encode_example({})) == tf.train.Example(
        features=tf.train.Features()
    )


def test_floats_are_stored_as_float32():
    (value,) = _parsed(encode_example({"f": float_feature([0.1])}))["f"][1]
    assert value == struct.unpack("<f", struct.pack("<f", 0.1))[0]
    assert value != 0.1


def test_non_ascii_keys_and_values():
    serialized = encode_example({"image/object/class/text": bytes_feature(["raton laveur é".encode()]), "клас": int64_feature([7])})
    assert _parsed(serialized) == {
        "image/object/class/text": ("bytes_list", ["raton laveur é".encode()]),
        "клас": ("int64_list", [7]),
    }


def test_bytes_equal_protobufs_deterministic_serialization():
    features = {
        "image/width": int64_feature([650]),
        "image/encoded": bytes_feature([b"\xff\xd8\xff" * 100]),
        "image/object/bbox/xmin": float_feature([0.125, 0.5]),
        "image/object/class/label": int64_feature([1, -2]),
        "image/object/class/text": bytes_feature([]),
    }
    serialized = encode_example(features)
    reserialized = tf.train.Example.FromString(serialized).SerializeToString(deterministic=True)
    assert serialized == reserialized


def test_bytes_do_not_depend_on_dict_order():
    items = [
        ("b", int64_feature([1])),
        ("a", bytes_feature([b"x"])),
        ("c/d", float_feature([1.0])),
        ("c", float_feature([])),
    ]
    assert encode_example(dict(items)) == encode_example(dict(reversed(items)))


_KEY = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
_FEATURE = st.one_of(
    st.tuples(st.just("bytes_list"), st.lists(st.binary(max_size=20), max_size=6)),
    st.tuples(
        st.just("float_list"),
        st.lists(st.floats(width=32, allow_nan=False), max_size=6),
    ),
    st.tuples(st.just("int64_list"), st.lists(st.integers(INT64_MIN, INT64_MAX), max_size=6)),
)
_ENCODERS = {"bytes_list": bytes_feature, "float_list": float_feature, "int64_list": int64_feature}


@given(st.dictionaries(_KEY, _FEATURE, max_size=6))
def test_random_features_round_trip_through_tf_train_example(intended):
    serialized = encode_example({key: _ENCODERS[kind](values) for key, (kind, values) in intended.items()})
    assert _parsed(serialized) == {key: (kind, list(values)) for key, (kind, values) in intended.items()}


# --- tfrecord_frame ------------------------------------------------------------------------------


def test_framed_records_read_back_with_tf_data(tmp_path):
    records = [
        encode_example({"i": int64_feature([n]), "b": bytes_feature([b"x" * n])}) for n in range(5)
    ] + [b"", b"\x00" * 70000]
    path = tmp_path / "data.tfrecord"
    path.write_bytes(_framed(records))
    read = [item.numpy() for item in tf.data.TFRecordDataset(str(path))]
    assert read == records


def _framed(records) -> bytes:
    return b"".join(chunk for record in records for chunk in tfrecord_frame((record,)))


def test_a_record_in_pieces_frames_like_the_whole():
    pieces = (b"head", b"", b"\x00" * 70000, b"tail")
    assert b"".join(tfrecord_frame(pieces)) == _framed([b"".join(pieces)])


def test_framing_equals_tensorflows_writer(tmp_path):
    records = [b"", b"abc", encode_example({"f": float_feature([1.0, 2.0])})]
    path = tmp_path / "tf.tfrecord"
    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in records:
            writer.write(record)
    assert path.read_bytes() == _framed(records)


def test_a_flipped_byte_is_caught_by_the_checksums(tmp_path):
    framed = bytearray(_framed([b"payload bytes"]))
    framed[14] ^= 0x01  # inside the data
    path = tmp_path / "bad.tfrecord"
    path.write_bytes(bytes(framed))
    with pytest.raises(tf.errors.DataLossError):
        list(tf.data.TFRecordDataset(str(path)))


# --- od_example -----------------------------------------------------------------------------------

_REQUIRED_KEYS = {
    "image/encoded",
    "image/format",
    "image/filename",
    "image/source_id",
    "image/key/sha256",
    "image/height",
    "image/width",
    "image/object/bbox/xmin",
    "image/object/bbox/ymin",
    "image/object/bbox/xmax",
    "image/object/bbox/ymax",
    "image/object/class/text",
    "image/object/class/label",
}


def _od(boxes, record=None, info=None, encoded=b"\xff\xd8\xffimage", labels=None):
    record = record or ImageRecord(key="dir/a.jpg", source="ann/a.xml", source_id="dir/a.jpg")
    info = info or ImageInfo("jpeg", 200, 100, 3)
    labels = labels or {"cat": 1, "dog": 2}
    sha = hashlib.sha256(encoded).hexdigest()
    return _parsed(b"".join(od_example(record, encoded, sha, info, boxes, labels))), sha


def test_od_example_has_exactly_the_od_api_keys_and_values():
    boxes = [
        NormalizedBox(Box("dog", 10, 20, 30, 40), 0.125, 0.25, 0.5, 0.75),
        NormalizedBox(Box("cat", 0, 0, 1, 1), 0.0, 0.0, 1.0, 1.0),
    ]
    record = ImageRecord(key="dir/a.jpg", source="ann/a.xml", source_id="42")
    parsed, sha = _od(boxes, record=record, info=ImageInfo("png", 200, 100, 4))
    assert parsed == {
        "image/encoded": ("bytes_list", [b"\xff\xd8\xffimage"]),
        "image/format": ("bytes_list", [b"png"]),
        "image/filename": ("bytes_list", [b"dir/a.jpg"]),
        "image/source_id": ("bytes_list", [b"42"]),
        "image/key/sha256": ("bytes_list", [sha.encode()]),
        "image/height": ("int64_list", [100]),
        "image/width": ("int64_list", [200]),
        "image/object/bbox/xmin": ("float_list", [0.125, 0.0]),
        "image/object/bbox/ymin": ("float_list", [0.25, 0.0]),
        "image/object/bbox/xmax": ("float_list", [0.5, 1.0]),
        "image/object/bbox/ymax": ("float_list", [0.75, 1.0]),
        "image/object/class/text": ("bytes_list", [b"dog", b"cat"]),
        "image/object/class/label": ("int64_list", [2, 1]),
    }


def test_negative_example_has_empty_lists_and_no_optional_keys():
    parsed, _ = _od([])
    assert set(parsed) == _REQUIRED_KEYS
    for key in _REQUIRED_KEYS:
        if key.startswith("image/object/"):
            assert parsed[key][1] == [], key


def test_optional_keys_only_when_every_box_has_the_value():
    boxes = [
        NormalizedBox(Box("cat", 0, 0, 1, 1, difficult=True, truncated=False, is_crowd=None, area=12.5), 0, 0, 0.5, 0.5),
        NormalizedBox(Box("dog", 0, 0, 1, 1, difficult=False, truncated=None, is_crowd=None, area=3.0), 0.5, 0.5, 1, 1),
    ]
    parsed, _ = _od(boxes)
    assert set(parsed) == _REQUIRED_KEYS | {"image/object/difficult", "image/object/area"}
    assert parsed["image/object/difficult"] == ("int64_list", [1, 0])
    assert parsed["image/object/area"] == ("float_list", [12.5, 3.0])


def test_all_optional_keys_when_all_boxes_have_all_values():
    box = Box("cat", 0, 0, 1, 1, difficult=False, truncated=True, is_crowd=True, area=0.0)
    parsed, _ = _od([NormalizedBox(box, 0.25, 0.25, 0.75, 0.75)])
    assert set(parsed) == _REQUIRED_KEYS | {
        "image/object/area",
        "image/object/is_crowd",
        "image/object/difficult",
        "image/object/truncated",
    }
    assert parsed["image/object/is_crowd"] == ("int64_list", [1])
    assert parsed["image/object/truncated"] == ("int64_list", [1])
    assert parsed["image/object/difficult"] == ("int64_list", [0])
    assert parsed["image/object/area"] == ("float_list", [0.0])


def test_area_beyond_float32_does_not_crash_the_writer():
    box = Box("cat", 0, 0, 1, 1, area=1e39)
    _od([NormalizedBox(box, 0.25, 0.25, 0.75, 0.75)])


def test_raccoon_record_reads_with_the_od_api_feature_spec(raccoon):
    (record,) = list(voc.parse("raccoon-1.xml", (raccoon / "annotations/raccoon-1.xml").read_bytes()))
    encoded = (raccoon / "images" / record.key).read_bytes()
    info = probe_image(encoded)
    outcome = normalize_boxes(record.boxes, PIXELS, info.width, info.height, record.source)
    record = ImageRecord(key=record.key, source=record.source, source_id=record.key, boxes=record.boxes)
    sha = hashlib.sha256(encoded).hexdigest()
    serialized = b"".join(od_example(record, encoded, sha, info, outcome.kept, {"raccoon": 1}))

    # The keys and types of TF Models' TfExampleDecoder.
    spec = {
        "image/encoded": tf.io.FixedLenFeature((), tf.string),
        "image/format": tf.io.FixedLenFeature((), tf.string),
        "image/filename": tf.io.FixedLenFeature((), tf.string),
        "image/key/sha256": tf.io.FixedLenFeature((), tf.string),
        "image/source_id": tf.io.FixedLenFeature((), tf.string),
        "image/height": tf.io.FixedLenFeature((), tf.int64),
        "image/width": tf.io.FixedLenFeature((), tf.int64),
        "image/object/bbox/xmin": tf.io.VarLenFeature(tf.float32),
        "image/object/bbox/xmax": tf.io.VarLenFeature(tf.float32),
        "image/object/bbox/ymin": tf.io.VarLenFeature(tf.float32),
        "image/object/bbox/ymax": tf.io.VarLenFeature(tf.float32),
        "image/object/class/label": tf.io.VarLenFeature(tf.int64),
        "image/object/class/text": tf.io.VarLenFeature(tf.string),
        "image/object/difficult": tf.io.VarLenFeature(tf.int64),
        "image/object/truncated": tf.io.VarLenFeature(tf.int64),
    }
    parsed = tf.io.parse_single_example(serialized, spec)
    assert parsed["image/encoded"].numpy() == encoded
    assert parsed["image/format"].numpy() == b"jpeg"
    assert parsed["image/filename"].numpy() == b"raccoon-1.jpg"
    assert parsed["image/source_id"].numpy() == b"raccoon-1.jpg"
    assert parsed["image/key/sha256"].numpy() == sha.encode()
    assert (parsed["image/height"].numpy(), parsed["image/width"].numpy()) == (417, 650)
    image = tf.io.decode_image(parsed["image/encoded"])
    assert tuple(image.shape) == (417, 650, 3)
    # <bndbox> 81 88 522 408 in a 650 x 417 image, no 1-pixel shift
    expected = {"xmin": 81 / 650, "ymin": 88 / 417, "xmax": 522 / 650, "ymax": 408 / 417}
    for corner, value in expected.items():
        assert parsed[f"image/object/bbox/{corner}"].values.numpy().tolist() == [pytest.approx(value, rel=1e-6)]
    assert parsed["image/object/class/label"].values.numpy().tolist() == [1]
    assert parsed["image/object/class/text"].values.numpy().tolist() == [b"raccoon"]
    assert parsed["image/object/difficult"].values.numpy().tolist() == [0]
    assert parsed["image/object/truncated"].values.numpy().tolist() == [0]
