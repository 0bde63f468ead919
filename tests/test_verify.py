"""verify: the TFRecord reader and Example parser against TensorFlow's own, each check on a crafted record,
and the real CLI on a folder of real raccoon records with one problem planted per kind."""
from __future__ import annotations

import hashlib
import io
import json
import struct

import pytest
import tensorflow as tf

from conftest import run_cli, shard_files, voc_boxes
from pipeline.cli import main
from raccoon_records import raccoon_records
from transforms.records.reader import Feature, guess_split, is_record_file, parse_example, read_frames
from transforms.reports.record_files import find_record_files
from transforms.reports.verify_checks import check_boxes, check_example, check_image

from image_factory import damaged_pngs, encode, gradient


def tf_example(**features) -> tf.train.Example:
    """An Example made by TensorFlow itself: bytes, float and int lists by the values' type."""
    example = tf.train.Example()
    for key, values in features.items():
        feature = example.features.feature[key]
        if values and isinstance(values[0], bytes):
            feature.bytes_list.value.extend(values)
        elif values and isinstance(values[0], float):
            feature.float_list.value.extend(values)
        elif values:
            feature.int64_list.value.extend(values)
    return example


def tf_record_file(path, serialized_records) -> None:
    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in serialized_records:
            writer.write(record)


# --- the reader -----------------------------------------------------------------------------------


def test_parse_example_equals_tensorflows_parse():
    example = tf_example(
        **{"image/encoded": [b"\x00\xffbytes"], "image/height": [480], "big": [-(2**63), 2**63 - 1, -1],
           "image/object/bbox/xmin": [0.25, 1.0, -0.5], "image/object/class/text": [b"raccoon", "\u00e9t\u00e9".encode()]}
    )
    example.features.feature["empty"].SetInParent()  # a Feature with no list set, as some writers leave
    parsed = parse_example(example.SerializeToString())
    for key, feature in example.features.feature.items():
        kind = feature.WhichOneof("kind")
        expected = list(getattr(feature, kind).value) if kind else []
        assert parsed[key] == Feature({"bytes_list": "bytes", "float_list": "float", "int64_list": "int64"}.get(kind), expected)


def test_parse_example_reads_unpacked_lists_too():
    # Field 1 of Int64List written unpacked (one tag per value), as a proto2 writer would.
    int_list = b"".join(b"\x08" + bytes([value]) for value in (3, 4))
    feature = b"\x1a" + bytes([len(int_list)]) + int_list
    entry = b"\x0a\x01k" + b"\x12" + bytes([len(feature)]) + feature
    features = b"\x0a" + bytes([len(entry)]) + entry
    assert parse_example(b"\x0a" + bytes([len(features)]) + features) == {"k": Feature("int64", [3, 4])}


def test_read_frames_checks_both_checksums_and_truncation(tmp_path):
    path = tmp_path / "x.tfrecord"
    tf_record_file(path, [b"first", b"second", b"third"])
    data = bytearray(path.read_bytes())
    assert [frame.data for frame in read_frames(io.BytesIO(bytes(data)))] == [b"first", b"second", b"third"]

    flipped = bytearray(data)
    flipped[12 + 5 + 4 + 12 + 2] ^= 0x01  # a byte of "second"
    frames = list(read_frames(io.BytesIO(bytes(flipped))))
    assert [(frame.data, frame.problem and frame.problem.kind) for frame in frames] == [
        (b"first", None), (None, "record_corrupt"), (b"third", None)
    ]
    bad_length = bytearray(data)
    bad_length[0] ^= 0x01
    assert [frame.problem.kind for frame in read_frames(io.BytesIO(bytes(bad_length)))] == ["record_corrupt"]
    cut = list(read_frames(io.BytesIO(bytes(data[:-3]))))
    assert [frame.problem and frame.problem.kind for frame in cut] == [None, None, "record_truncated"]


@pytest.mark.parametrize(
    "relative, split",
    [
        ("raccoon-train.tfrecord-00000-of-00001", "train"),
        ("my-data-holdout.tfrecord-00003-of-00008", "holdout"),
        ("valid/raccoons.tfrecord", "valid"),  # Roboflow: a folder per split
        ("test.record", "test"),  # the old generate_tfrecord.py
        ("coco_val.record-00000-of-00010", "val"),  # the OD API's create_coco_tf_record.py
        ("default.tfrecord", "all"),  # Datumaro's default subset
        ("contest/pictures.tfrecord", "all"),  # `test` inside a word names no split
    ],
)
def test_split_is_guessed_from_the_path(relative, split):
    assert guess_split(relative) == split


@pytest.mark.parametrize(
    "name, is_records",
    [("a.tfrecord", True), ("a.tfrecords", True), ("train.record", True), ("x-train.tfrecord-00000-of-00004", True),
     ("x.record-00001-of-00010", True), ("a.tfrecord.gz", True), ("label_map.pbtxt", False), ("records.txt", False),
     ("summary.json", False), ("a.recorder", False)],
)
def test_record_files_are_recognised_by_name(name, is_records):
    assert is_record_file(name) == is_records


def test_hidden_staging_folders_are_not_read(tmp_path):
    (tmp_path / ".staging" / "run").mkdir(parents=True)
    tf_record_file(tmp_path / ".staging" / "run" / "d-train.tfrecord-00000-of-00001", [b"x"])
    tf_record_file(tmp_path / "d-train.tfrecord-00000-of-00001", [b"x"])
    assert [f.relative for f in find_record_files(str(tmp_path))] == ["d-train.tfrecord-00000-of-00001"]


# --- the checks -----------------------------------------------------------------------------------

PNG = encode(gradient(64, 48), "PNG")


def features_of(**features):
    return parse_example(tf_example(**features).SerializeToString())


def good(**changes):
    features = {
        "image/encoded": [PNG], "image/format": [b"png"], "image/width": [64], "image/height": [48],
        "image/filename": [b"a.png"], "image/source_id": [b"a.png"],
        "image/key/sha256": [hashlib.sha256(PNG).hexdigest().encode()],
        "image/object/bbox/xmin": [0.1], "image/object/bbox/ymin": [0.6], "image/object/bbox/xmax": [0.4],
        "image/object/bbox/ymax": [0.9], "image/object/class/text": [b"cat"], "image/object/class/label": [1],
    }
    features.update(changes)
    return features_of(**{key: value for key, value in features.items() if value is not None})


def kinds(features, label_map={1: "cat"}):
    findings, _ = check_example(features, label_map)
    return sorted(finding.kind for finding in findings)


def test_a_good_record_has_no_findings():
    assert kinds(good()) == []


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({"image/encoded": None}, ["key_missing"]),
        ({"image/height": [48.0]}, ["key_mistyped"]),
        ({"image/width": [65]}, ["size_mismatch"]),
        ({"image/format": [b"jpg"]}, ["format_key_disagrees"]),
        ({"image/key/sha256": None}, ["key_absent"]),
        ({"image/key/sha256": [b"0" * 64]}, ["sha256_mismatch"]),
        ({"image/object/bbox/xmax": [1.5]}, ["box_out_of_range"]),
        ({"image/object/bbox/xmax": [0.1]}, ["box_empty"]),
        ({"image/object/bbox/xmin": [float("nan")]}, ["box_not_finite"]),
        ({"image/object/class/label": [1, 1]}, ["list_length_mismatch"]),
        ({"image/object/class/label": None}, ["key_missing"]),
        ({"image/object/class/label": [2]}, ["label_not_in_map"]),
        ({"image/object/class/label": [0]}, ["label_not_in_map"]),
        ({"image/object/class/text": [b"dog"]}, ["label_text_mismatch"]),
        # xmin and ymin exchanged: 0.6 > xmax 0.4 inverts the box, and the exchange back repairs it
        ({"image/object/bbox/xmin": [0.6], "image/object/bbox/ymin": [0.1]}, ["box_inverted", "xy_swap_suspected"]),
    ],
)
def test_each_problem_is_found(changes, expected):
    assert kinds(good(**changes)) == expected


def test_images_are_decoded_not_trusted():
    assert [f.kind for f in check_image(good(**{"image/encoded": [b""]}))[0]] == ["image_empty"]
    cut = PNG[: len(PNG) // 2]
    findings, _ = check_image(good(**{"image/encoded": [cut], "image/key/sha256": None}))
    assert [f.kind for f in findings] == ["image_undecodable"]
    tiff = encode(gradient(64, 48), "TIFF")
    findings, _ = check_image(good(**{"image/encoded": [tiff], "image/format": [b"tiff"], "image/key/sha256": None}))
    assert [f.kind for f in findings] == ["image_unsupported_format"]


DAMAGED = damaged_pngs()


@pytest.mark.parametrize(
    "name, expected",
    [
        ("png_duplicate_ihdr", ["image_undecodable"]),  # Pillow decodes these three; decode_png refuses them
        ("png_bad_idat_crc", ["image_undecodable"]),
        ("png_palette_without_plte", ["image_undecodable"]),
        ("png_bad_ancillary_crc", []),  # Pillow refuses it; libpng drops the chunk and decodes the image
        ("png_rgb_plte_bad_length", []),
    ],
)
def test_images_are_judged_by_tensorflows_decoders_rules(name, expected):
    import tensorflow as tf

    data = DAMAGED[name]
    decodes = True
    try:
        tf.io.decode_image(data, expand_animations=False)
    except tf.errors.OpError:
        decodes = False
    assert decodes == (expected == [])
    features = good(**{"image/encoded": [data], "image/key/sha256": None, "image/width": [64], "image/height": [48]})
    findings, _ = check_image(features)
    assert [f.kind for f in findings] == expected


def test_verify_flags_a_record_that_tensorflow_cannot_decode(tmp_path, capsys):
    """A PNG with two IHDR chunks: Pillow decodes it, tf.io.decode_png stops training on it."""
    data = DAMAGED["png_duplicate_ihdr"]
    record = tf_example(**{
        "image/encoded": [data], "image/format": [b"png"], "image/width": [64], "image/height": [48],
        "image/filename": [b"a.png"], "image/source_id": [b"a.png"],
        "image/key/sha256": [hashlib.sha256(data).hexdigest().encode()],
        "image/object/bbox/xmin": [0.1], "image/object/bbox/ymin": [0.6], "image/object/bbox/xmax": [0.4],
        "image/object/bbox/ymax": [0.9], "image/object/class/text": [b"cat"], "image/object/class/label": [1],
    })
    tf_record_file(tmp_path / "d-train.tfrecord-00000-of-00001", [record.SerializeToString()])
    (tmp_path / "label_map.pbtxt").write_text("item {\n  id: 1\n  name: 'cat'\n}\n")
    assert main(["verify", str(tmp_path), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert set(report["problems"]) == {"image_undecodable"}
    assert "second IHDR" in report["problems"]["image_undecodable"]["examples"][0]["detail"]


def test_a_swap_that_leaves_boxes_valid_is_not_claimed():
    # x and y exchanged in a box that stays valid: nothing in the record can tell, so nothing is said.
    swapped = good(**{"image/object/bbox/xmin": [0.2], "image/object/bbox/ymin": [0.1],
                      "image/object/bbox/xmax": [0.9], "image/object/bbox/ymax": [0.8]})
    assert check_boxes(swapped) == []


# --- the real CLI on real records -----------------------------------------------------------------


@pytest.fixture(scope="module")
def raccoon_output(raccoon, tmp_path_factory):
    return raccoon_records(raccoon, tmp_path_factory)


@pytest.mark.slow
def test_verify_says_a_fresh_conversion_is_clean(raccoon_output):
    result = run_cli("verify", raccoon_output, "--json", check_exit=0)
    report = json.loads(result.stdout)
    assert report["clean"] and report["records"] == 200 and report["files"] == 6  # 3 splits x 2 shards
    assert sum(split["boxes"] for split in report["splits"].values()) == 217
    assert set(report["problems"]) <= {"image_duplicate_within_split"}  # the raccoon set's known copies


@pytest.mark.slow
def test_verify_finds_each_planted_problem(raccoon_output, tmp_path, capsys):
    """One flipped byte, one empty image, one record with xmin/ymin swapped, one label missing from the map,
    planted in real records rewritten by TensorFlow's own writer."""
    records = [record.numpy() for record in tf.data.TFRecordDataset(shard_files(raccoon_output))]
    examples = [tf.train.Example.FromString(record) for record in records]

    def corner(example, name):
        return list(example.features.feature[f"image/object/bbox/{name}"].float_list.value)

    # Swapping the xmin and ymin lists is only visible where it breaks a box: pick a record where it does.
    # Record 80 is the one whose byte gets flipped (the first of the second file); the others are kept apart.
    # In the raccoon set two photos have such a box (raccoon-119.jpg, raccoon-148.jpg: ymin > xmax).
    swap_index = next(
        i for i, example in enumerate(examples)
        if i != 80 and any(y0 > x1 or x0 > y1 for x0, y0, x1, y1 in zip(*(corner(example, c) for c in ("xmin", "ymin", "xmax", "ymax"))))
    )
    one_box = [i for i, example in enumerate(examples) if len(corner(example, "xmin")) == 1 and i not in (80, swap_index)]
    empty_index, label_index = one_box[:2]

    empty = examples[empty_index]
    empty.features.feature["image/encoded"].bytes_list.value[:] = [b""]
    swapped = examples[swap_index]
    xmin, ymin = corner(swapped, "xmin"), corner(swapped, "ymin")
    swapped.features.feature["image/object/bbox/xmin"].float_list.value[:] = ymin
    swapped.features.feature["image/object/bbox/ymin"].float_list.value[:] = xmin
    unknown = examples[label_index]
    unknown.features.feature["image/object/class/label"].int64_list.value[:] = [7]

    planted = tmp_path / "planted"
    planted.mkdir()
    (planted / "label_map.pbtxt").write_bytes((raccoon_output / "label_map.pbtxt").read_bytes())
    edited = [example.SerializeToString() if i in (empty_index, swap_index, label_index) else records[i]
              for i, example in enumerate(examples)]
    tf_record_file(planted / "raccoon-train.tfrecord-00000-of-00002", edited[:80])
    tf_record_file(planted / "raccoon-train.tfrecord-00001-of-00002", edited[80:])
    shard = planted / "raccoon-train.tfrecord-00001-of-00002"
    data = bytearray(shard.read_bytes())
    (length,) = struct.unpack("<Q", data[:8])
    data[12 + length // 2] ^= 0x40  # one bit in the middle of that shard's first record
    shard.write_bytes(bytes(data))

    result = run_cli("verify", planted, "--json", check_exit=1)
    report = json.loads(result.stdout)
    problems = report["problems"]
    where = lambda kind: [(e["file"], e["record"]) for e in problems[kind]["examples"]]
    place = lambda index: (f"raccoon-train.tfrecord-0000{index // 80}-of-00002", index % 80)
    assert where("record_corrupt") == [("raccoon-train.tfrecord-00001-of-00002", 0)]
    assert where("image_empty") == [place(empty_index)]
    assert where("box_inverted") == [place(swap_index)]
    assert where("xy_swap_suspected") == [place(swap_index)]
    assert where("label_not_in_map") == [place(label_index)]
    assert problems["label_not_in_map"]["examples"][0]["detail"] == "box 0: label 7 ('raccoon')"
    assert not report["clean"] and report["records"] == len(records) - 1
    errors = {kind for kind, problem in problems.items() if problem["severity"] == "error"}
    assert errors == {"record_corrupt", "image_empty", "box_inverted", "label_not_in_map"}

    assert main(["verify", str(planted)]) == 1  # the report for people, in-process
    text = capsys.readouterr().out
    assert "NOT CLEAN" in text and "record_corrupt" in text and "raccoon-train.tfrecord-00001-of-00002 #0" in text


@pytest.mark.slow
def test_verify_names_the_deviations_of_the_old_generate_tfrecord_script(raccoon, tmp_path, capsys):
    """Records as Dat Tran's generate_tfrecord.py wrote them: `jpg`, no sha256, `train.record`."""
    folder = tmp_path / "legacy"
    folder.mkdir()
    serialized = []
    for xml_path in sorted((raccoon / "annotations").glob("*.xml"))[:5]:
        filename, (width, height), boxes = voc_boxes(xml_path)
        serialized.append(tf_example(**{
            "image/height": [height], "image/width": [width], "image/filename": [filename.encode()],
            "image/source_id": [filename.encode()], "image/encoded": [(raccoon / "images" / filename).read_bytes()],
            "image/format": [b"jpg"],
            "image/object/bbox/xmin": [b[1] / width for b in boxes], "image/object/bbox/xmax": [b[3] / width for b in boxes],
            "image/object/bbox/ymin": [b[2] / height for b in boxes], "image/object/bbox/ymax": [b[4] / height for b in boxes],
            "image/object/class/text": [b[0].encode() for b in boxes], "image/object/class/label": [1 for _ in boxes],
        }).SerializeToString())
    tf_record_file(folder / "train.record", serialized)
    assert main(["verify", str(folder), "--label_map", str(raccoon / "label_map.pbtxt"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["splits"] == {"train": {"records": 5, "boxes": sum(len(voc_boxes(p)[2]) for p in sorted((raccoon / "annotations").glob("*.xml"))[:5])}}
    assert set(report["problems"]) == {"key_absent", "format_key_disagrees"}
    assert report["problems"]["key_absent"]["examples"][0]["detail"] == "image/key/sha256 is absent"
    assert report["problems"]["format_key_disagrees"]["examples"][0]["detail"] == "image/format is 'jpg'; the bytes are jpeg"


@pytest.mark.slow
def test_verify_names_the_deviations_of_a_datumaro_export(raccoon, tmp_path, capsys):
    """As Datumaro's tf_detection_api exporter writes: `default.tfrecord`, a tab-indented label map, an empty
    image/source_id unless the source had one, non-ASCII dropped from class texts (but not from the map)."""
    folder = tmp_path / "datumaro"
    folder.mkdir()
    (folder / "label_map.pbtxt").write_text("item {\n\tid: 1\n\tname: 'raccoon'\n}\n\nitem {\n\tid: 2\n\tname: 'Waschb\u00e4r'\n}\n\n")
    serialized = []
    for index, xml_path in enumerate(sorted((raccoon / "annotations").glob("*.xml"))[:3]):
        filename, (width, height), boxes = voc_boxes(xml_path)
        encoded = (raccoon / "images" / filename).read_bytes()
        label, text = (2, b"Waschbr") if index == 0 else (1, b"raccoon")
        serialized.append(tf_example(**{
            "image/source_id": [b""], "image/filename": [filename.encode()], "image/height": [height],
            "image/width": [width], "image/encoded": [encoded], "image/format": [b"jpeg"],
            "image/key/sha256": [hashlib.sha256(encoded).hexdigest().encode()],
            "image/object/bbox/xmin": [b[1] / width for b in boxes], "image/object/bbox/xmax": [b[3] / width for b in boxes],
            "image/object/bbox/ymin": [b[2] / height for b in boxes], "image/object/bbox/ymax": [b[4] / height for b in boxes],
            "image/object/class/text": [text for _ in boxes], "image/object/class/label": [label for _ in boxes],
        }).SerializeToString())
    tf_record_file(folder / "default.tfrecord", serialized)
    assert main(["verify", str(folder), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["splits"]["all"]["records"] == 3
    assert set(report["problems"]) == {"label_text_mismatch", "source_id_duplicate"}
    assert report["problems"]["label_text_mismatch"]["examples"][0]["detail"] == (
        "box 0: label 2 is 'Waschb\u00e4r' in the map, the text says 'Waschbr'")
    assert report["problems"]["source_id_duplicate"]["examples"][0]["detail"] == "b'' on 3 records of all"


def test_verify_usage_errors_exit_2(tmp_path, capsys):
    missing = run_cli("verify", tmp_path / "nope", check_exit=2)
    assert missing.stderr.strip() == f"error: {tmp_path / 'nope'} does not exist"
    # The rest in-process: the same main(), without paying an interpreter start each.
    assert main(["verify", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == f"error: no TFRecord files (*.tfrecord*, *.record*) in {tmp_path}"
    tf_record_file(tmp_path / "a.tfrecord", [tf_example(**{"image/encoded": [PNG]}).SerializeToString()])
    assert main(["verify", str(tmp_path), "--label_map", str(tmp_path / "missing.pbtxt")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: --label_map") and len(error.strip().splitlines()) == 1
    assert main(["verify", str(tmp_path), "--samples", "3"]) == 2
    assert "unrecognized arguments: --samples 3" in capsys.readouterr().err


# --- a folder with nothing to train on ------------------------------------------------------------


def _record(boxes: int, text=lambda index: b"cat") -> bytes:
    """A good record of the 64x48 PNG with `boxes` boxes of label 1."""
    return tf_example(**{
        "image/encoded": [PNG], "image/format": [b"png"], "image/width": [64], "image/height": [48],
        "image/filename": [b"a.png"], "image/source_id": [b"a.png"],
        "image/key/sha256": [hashlib.sha256(PNG).hexdigest().encode()],
        "image/object/bbox/xmin": [0.1] * boxes, "image/object/bbox/ymin": [0.6] * boxes,
        "image/object/bbox/xmax": [0.4] * boxes, "image/object/bbox/ymax": [0.9] * boxes,
        "image/object/class/text": [text(index) for index in range(boxes)], "image/object/class/label": [1] * boxes,
    }).SerializeToString()


def test_verify_a_folder_whose_record_files_hold_no_record_is_an_error(tmp_path, capsys):
    tf_record_file(tmp_path / "d-train.tfrecord-00000-of-00002", [])
    tf_record_file(tmp_path / "d-train.tfrecord-00001-of-00002", [])
    (tmp_path / "label_map.pbtxt").write_text("item {\n  id: 1\n  name: 'cat'\n}\n")
    assert main(["verify", str(tmp_path), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert not report["clean"] and report["records"] == 0
    assert set(report["problems"]) == {"no_records", "file_empty"}
    assert report["problems"]["no_records"]["severity"] == "error"
    assert report["problems"]["no_records"]["examples"] == [{"detail": "2 record file(s), none holds a record"}]
    assert main(["verify", str(tmp_path)]) == 1
    text = capsys.readouterr().out
    assert "NOT CLEAN" in text and "no_records" in text


def test_verify_a_dataset_where_no_record_has_a_box_is_an_error(tmp_path, capsys):
    (tmp_path / "label_map.pbtxt").write_text("item {\n  id: 1\n  name: 'cat'\n}\n")
    tf_record_file(tmp_path / "d-train.tfrecord-00000-of-00001", [_record(0)])
    tf_record_file(tmp_path / "d-val.tfrecord-00000-of-00001", [_record(0)])
    assert main(["verify", str(tmp_path), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["records"] == 2 and not report["clean"]
    assert set(report["problems"]) == {"no_boxes", "image_duplicate_across_splits"}
    assert report["problems"]["no_boxes"]["severity"] == "error"
    assert report["problems"]["no_boxes"]["examples"] == [{"detail": "none of the 2 records has a box"}]

    # One box anywhere and negatives are what they usually are: images without objects.
    tf_record_file(tmp_path / "d-val.tfrecord-00000-of-00001", [_record(1)])
    assert main(["verify", str(tmp_path), "--json"]) == 1
    assert "no_boxes" not in json.loads(capsys.readouterr().out)["problems"]
    (tmp_path / "d-val.tfrecord-00000-of-00001").unlink()
    tf_record_file(tmp_path / "d-train.tfrecord-00000-of-00001", [_record(0), _record(2)])
    assert main(["verify", str(tmp_path), "--json"]) == 0
    assert set(json.loads(capsys.readouterr().out)["problems"]) == {"image_duplicate_within_split", "source_id_duplicate"}


# --- a reader that stops early --------------------------------------------------------------------


@pytest.mark.parametrize("as_json", [True, False])
def test_verify_into_a_reader_that_stops_early_ends_quietly(tmp_path, as_json):
    """`verify OUT | head -c 10`: the reader leaves after a few bytes of a report bigger than a pipe holds."""
    import os
    import subprocess
    import sys

    from conftest import REPO

    # 300 class texts of 400 characters for one label id, all named in one label_text_inconsistent example.
    record = _record(300, text=lambda index: f"{index:03d}".encode() + b"x" * 400)
    tf_record_file(tmp_path / "d-train.tfrecord-00000-of-00001", [record])
    command = [sys.executable, "-m", "pipeline", "verify", str(tmp_path)] + (["--json"] if as_json else [])
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert len(process.stdout.read(10)) == 10
        process.stdout.close()
        stderr = process.stderr.read().decode()
        status = process.wait(timeout=120)
    finally:
        process.kill()
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, stderr
    assert stderr == ""
    assert status == 1  # the verdict (label_text_inconsistent), not the reader's leaving
