"""inspect: contact sheets checked pixel by pixel against the records as TensorFlow reads them, charts and
index.html, deterministic samples, and a folder laid out by another tool (no summary.json)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from conftest import read_examples, run_cli, shard_files
from image_factory import encode, gradient
from pipeline.cli import main
from raccoon_records import raccoon_records
from transforms.reports.inspect_report import class_colours, contact_sheet
from transforms.records.reader import ODBox, ODRecord


def edge_fractions(sheet: np.ndarray, rectangle, colour):
    """The share of pixels in the colour along the inside of each edge (left, top, right, bottom)."""
    x0, y0, x1, y1 = rectangle
    matches = lambda pixels: float(np.mean(np.all(pixels == np.array(colour), axis=-1)))
    return (
        matches(sheet[y0:y1 + 1, x0 + 1]),
        matches(sheet[y0 + 1, x0:x1 + 1]),
        matches(sheet[y0:y1 + 1, x1 - 1]),
        matches(sheet[y1 - 1, x0:x1 + 1]),
    )


def test_class_colours_are_distinct_for_many_classes():
    colours = class_colours([f"class {i}" for i in range(200)])
    assert len(set(colours.values())) == 200


def test_each_box_is_drawn_in_its_class_colour_where_the_record_puts_it():
    record = ODRecord(
        encoded=encode(gradient(200, 100), "PNG"), width=200, height=100, filename="a.png",
        boxes=(ODBox(0.1, 0.2, 0.5, 0.9, 1, "cat"), ODBox(0.6, 0.1, 0.95, 0.6, 2, "dog")),
    )
    colours = class_colours(["cat", "dog"])
    sheet, (tile,) = contact_sheet([("shard", 0, record)], colours, {})
    pixels = np.asarray(sheet)
    left, top, right, bottom = tile.image_area
    assert (right - left, bottom - top) == (384, 192)  # scaled to the tile's width, aspect kept
    assert [box["class"] for box in tile.boxes] == ["cat", "dog"]
    for box, source in zip(tile.boxes, record.boxes):
        expected = [left + source.xmin * 384, top + source.ymin * 192, left + source.xmax * 384, top + source.ymax * 192]
        assert box["rectangle"] == [round(value) for value in expected]
        assert min(edge_fractions(pixels, box["rectangle"], colours[box["class"]])[::2]) > 0.95  # left and right edges
    assert sheet.size == (384, 288 + 34)  # one sample, one column


def test_a_box_that_looks_right_only_when_drawn_min_to_max_is_flagged():
    record = ODRecord(encoded=b"", width=100, height=100, filename="a.png",
                      boxes=(ODBox(0.6, 0.1, 0.3, 0.5, 1, "cat"), ODBox(0.1, 0.1, 1.2, 0.5, 1, "cat")))
    _, (tile,) = contact_sheet([("shard", 0, record)], class_colours(["cat"]), {})
    assert [box["caption"] for box in tile.boxes] == ["cat (inverted!)", "cat (outside!)"]


@pytest.fixture(scope="module")
def inspected(raccoon, tmp_path_factory):
    base = tmp_path_factory.mktemp("inspect")
    output, report = raccoon_records(raccoon, tmp_path_factory), base / "report"
    result = run_cli("inspect", output, "--report", report, "--samples", "8", check_exit=0)
    return output, report, result


@pytest.mark.slow
def test_contact_sheets_show_every_box_of_the_sampled_records(inspected):
    output, report, result = inspected
    assert "Inspected 200 records (train" in result.stdout
    positions = json.loads((report / "samples.json").read_text())
    assert set(positions) == {"train", "val", "test"}
    colour = tuple(class_colours(["raccoon"])["raccoon"])
    examples = {}  # shard -> its records, read by TensorFlow
    for split, tiles in positions.items():
        assert len(tiles) == min(8, json.loads((output / "summary.json").read_text())["splits"][split]["images"])
        sheet = np.asarray(Image.open(report / f"samples-{split}.png").convert("RGB"))
        for tile in tiles:
            if tile["file"] not in examples:
                examples[tile["file"]] = read_examples([output / tile["file"]])
            example = examples[tile["file"]][tile["record"]]
            left, top, right, bottom = tile["image_area"]
            photo = sheet[top:bottom, left:right]
            assert photo.std() > 20, "the image area holds a photo, not a blank"
            expected = list(zip(*(example[f"image/object/bbox/{c}"] for c in ("xmin", "ymin", "xmax", "ymax"))))
            assert len(tile["boxes"]) == len(expected)
            width, height = right - left, bottom - top
            for box, (xmin, ymin, xmax, ymax) in zip(tile["boxes"], expected):
                corners = [left + xmin * width, top + ymin * height, left + xmax * width, top + ymax * height]
                assert box["rectangle"] == pytest.approx(corners, abs=1)
                # Three edges drawn in the class colour (the top one carries the class name's label).
                left_edge, _, right_edge, bottom_edge = edge_fractions(sheet, box["rectangle"], colour)
                assert min(left_edge, right_edge, bottom_edge) > 0.8, (tile["filename"], box)


@pytest.mark.slow
def test_charts_and_index_show_the_counts(inspected):
    output, report, _ = inspected
    for chart in ("boxes_per_class.png", "box_sizes.png"):
        pixels = np.asarray(Image.open(report / chart).convert("L"))
        assert pixels.shape[1] >= 800 and pixels.std() > 10, chart
    page = (report / "index.html").read_text()
    summary = json.loads((output / "summary.json").read_text())
    for split, counts in summary["splits"].items():
        assert f"<td>{split}</td><td>2</td><td>{counts['images']}</td><td>{counts['boxes']}</td>" in page
    assert "<h2>summary.json</h2>" in page and "<td>raccoon</td>" in page
    assert "src='samples-train.png'" in page and "src='boxes_per_class.png'" in page and "rejected.jsonl: 0 entries" in page


@pytest.mark.slow
def test_samples_do_not_depend_on_how_records_are_filed(inspected, tmp_path, capsys):
    """The same records in another tool's layout (Roboflow: a folder per split, no summary.json) give the
    same samples: the choice hashes the records, not their file names or order."""
    output, report, _ = inspected
    other = tmp_path / "roboflow"
    for split, folder in (("train", "train"), ("val", "valid")):
        (other / folder).mkdir(parents=True)
        for index, shard in enumerate(reversed(shard_files(output, f"raccoon-{split}.tfrecord-*"))):
            shutil.copy(shard, other / folder / f"raccoons-{index}.tfrecord")
    shutil.copy(output / "label_map.pbtxt", other / "train" / "raccoons_label_map.pbtxt")
    assert main(["inspect", str(other), "--report", str(tmp_path / "r"), "--samples", "8", "--split", "valid"]) == 0
    assert "Inspected" in capsys.readouterr().out
    ours = [tile["filename"] for tile in json.loads((report / "samples.json").read_text())["val"]]
    theirs = [tile["filename"] for tile in json.loads((tmp_path / "r" / "samples.json").read_text())["valid"]]
    assert theirs == ours
    page = (tmp_path / "r" / "index.html").read_text()
    assert "<h2>summary.json</h2>" not in page and "<td>valid</td>" in page


def test_inspect_usage_errors_exit_2(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "nope"), "--report", str(tmp_path / "r")]) == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'nope'} does not exist"
    assert main(["inspect", str(tmp_path)]) == 2
    assert "--report" in capsys.readouterr().err


@pytest.mark.slow
def test_an_unreadable_record_file_is_counted_not_a_traceback(inspected, tmp_path, capsys):
    output, _, _ = inspected
    copy = tmp_path / "copy"
    shutil.copytree(output, copy)
    (copy / "raccoon-train.tfrecord-00099-of-00100.gz").write_bytes(b"not gzip at all" * 10)
    assert main(["inspect", str(copy), "--report", str(tmp_path / "r"), "--samples", "4"]) == 0
    assert "Inspected" in capsys.readouterr().out
    page = (tmp_path / "r" / "index.html").read_text()
    train = json.loads((output / "summary.json").read_text())["splits"]["train"]
    assert f"<td>train</td><td>3</td><td>{train['images']}</td><td>{train['boxes']}</td>" in page
    assert page.split("<td>train</td>")[1].split("</tr>")[0].endswith("<td>1</td>")  # one unreadable file


def test_inspect_into_a_reader_that_has_left_ends_quietly(tmp_path):
    """`inspect OUT --report R | head -c 10` where the reader is gone before the counts are printed."""
    import os
    import subprocess
    import sys

    from conftest import REPO
    from test_verify import _record, tf_record_file

    folder = tmp_path / "records"
    folder.mkdir()
    tf_record_file(folder / "d-train.tfrecord-00000-of-00001", [_record(1)])
    command = [sys.executable, "-m", "pipeline", "inspect", str(folder), "--report", str(tmp_path / "report")]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        process.stdout.close()  # nothing is printed before the report is written: the write finds no reader
        stderr = process.stderr.read().decode()
        status = process.wait(timeout=120)
    finally:
        process.kill()
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, stderr
    assert status == 0 and (tmp_path / "report" / "index.html").exists()
